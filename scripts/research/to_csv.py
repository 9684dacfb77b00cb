"""Research: JSONL rows of grid.py -> the CSV `optlaw fit --csv` reads (best lr per cell).

usage: to_csv.py OUT.csv IN.jsonl [IN.jsonl ...] [--min-tpp 5] [--max-tpp 90] [--lr opt=mult ...]
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path


def rows(paths):
    for path in paths:
        for line in open(path):
            row = json.loads(line)
            if row.get("status") != "done" or row.get("val_loss") is None:
                continue
            ov = dict(o.split("=", 1) for o in row["overrides"] if "=" in o)
            run_dir = Path(ov["run_dir"])
            rec = json.load(open(run_dir / "run.json"))
            extra = " ".join(o for o in row["overrides"] if o.startswith("data.") and not o.startswith("data.vocab"))
            yield {"optimizer": ov["optimizer"], "lr_mult": float(ov.get("optimizer.lr_mult", 1)),
                   "N": rec["N_non_embedding"], "D": rec["D"], "loss": rec["final_val_loss"],
                   "flops": rec["flops"], "step_cost": rec.get("step_cost_ratio") or 1.0, "extra": extra}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--min-tpp", type=float, default=0)
    p.add_argument("--max-tpp", type=float, default=1e9)
    p.add_argument("--opts", default=None)
    a = p.parse_args()
    best = {}
    for r in rows(a.inputs):
        if not a.min_tpp <= r["D"] / r["N"] <= a.max_tpp:
            continue
        if a.opts and r["optimizer"] not in a.opts.split(","):
            continue
        key = (r["optimizer"], r["N"], r["D"], r["extra"])
        if key not in best or r["loss"] < best[key]["loss"]:
            best[key] = r
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["optimizer", "N", "D", "loss", "lr_mult", "flops", "step_cost"])
        w.writeheader()
        for key in sorted(best):
            w.writerow({k: best[key][k] for k in w.fieldnames})
    print(f"{len(best)} cells -> {a.out}")


if __name__ == "__main__":
    main()
