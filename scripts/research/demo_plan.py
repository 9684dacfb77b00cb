"""Research: the proposed demo, end to end in this process (one thread): tune lr_mult per
optimizer on the two smallest sizes at one budget, transfer the winner to the grid, train
the grid with budget branching. Prints CPU seconds per phase (process time).

usage: demo_plan.py TAG [--opts adamw,muon,shampoo,soap] [--extra data.k=v ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

sys.path.insert(0, "scripts/research")
from grid import parser, run_grid  # noqa: E402

WIDTHS = "16,24,32,40,56"          # llama/7k .. llama/75k (tiny tier)
TOKENS = "131072,262144,524288,1048576,2097152"
TUNE_WIDTHS, TUNE_TOKENS = "16,24", "262144"
LRS = "0.5,1,2,4,8,16"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("tag")
    p.add_argument("--opts", default="adamw,muon,shampoo,soap")
    p.add_argument("--lrs", default=LRS)
    p.add_argument("--extra", nargs="*", default=[])
    p.add_argument("--warmup", default="8192")
    p.add_argument("--batch", default="1024")
    a = p.parse_args()
    tune_out, main_out = f"/tmp/dp_{a.tag}_tune.jsonl", f"/tmp/dp_{a.tag}_main.jsonl"
    common = ["--head-dim", "8", "--warmup", a.warmup, "--batch", a.batch, "--root", f"/tmp/dp_{a.tag}"]
    if a.extra:
        common += ["--extra", *a.extra]
    for opt in a.opts.split(","):
        t0 = time.process_time()
        run_grid(parser().parse_args([tune_out, "--widths", TUNE_WIDTHS, "--tokens", TUNE_TOKENS, "--opts", opt,
                                      "--lr", a.lrs, *common]))
        t1 = time.process_time()
        rows = [json.loads(line) for line in open(tune_out)]
        score = {}
        for r in rows:
            ov = dict(o.split("=", 1) for o in r["overrides"] if "=" in o)
            if ov["optimizer"] != opt or r["val_loss"] is None:
                continue
            score.setdefault(ov["optimizer.lr_mult"], []).append(r["val_loss"])
        best = min((sum(v) / len(v), k) for k, v in score.items() if len(v) == 2)[1]
        print(f"PHASE {opt} tune cpu={t1 - t0:.1f}s best lr_mult={best} "
              + " ".join(f"{k}:{sum(v) / len(v):.4f}" for k, v in sorted(score.items(), key=lambda kv: float(kv[0]))),
              flush=True)
        run_grid(parser().parse_args([main_out, "--widths", WIDTHS, "--tokens", TOKENS, "--opts", opt, "--lr", best,
                                      "--min-tpp", "4.5", "--max-tpp", "90", *common]))
        print(f"PHASE {opt} main cpu={time.process_time() - t1:.1f}s", flush=True)


if __name__ == "__main__":
    main()
