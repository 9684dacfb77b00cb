"""Research helper: train many points in one process (no per-point start-up), one thread.

Each point is a list of `optlaw train` overrides; the result line (JSONL) holds the final
val loss, N, D, and the CPU and wall seconds the point took in this process
(time.process_time, so contention from other jobs on the machine does not inflate it).
"""
from __future__ import annotations

import json
import sys
import time

from optlaw.config import compose
from optlaw.train.trainer import train


def run_point(overrides: list[str], out_jsonl: str, tag: str = "") -> dict:
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    cfg = compose("train", ["device=cpu", "cpu_threads=1", "progress=false", "wandb.mode=disabled", *overrides])
    rec = train(cfg)
    cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
    evals = rec.get("evals") or []
    row = {
        "tag": tag, "overrides": overrides, "status": rec.get("status"),
        "N": rec.get("N_non_embedding"), "D": rec.get("D"), "run_dir": rec.get("config", {}).get("run_dir"),
        "val_loss": evals[-1]["val_loss"] if evals else None,
        "evals": [(e["tokens"], e["val_loss"]) for e in evals],
        "floor": rec.get("entropy_floor_nats"), "cpu_s": cpu, "wall_s": wall,
        "record": {k: rec.get(k) for k in ("steps", "flops", "step_cost_ratio", "mean_fwd_bwd_s", "mean_optimizer_step_s")},
    }
    with open(out_jsonl, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("tag", "status", "N", "val_loss", "floor", "cpu_s", "wall_s")}), flush=True)
    return row


if __name__ == "__main__":
    # usage: inproc.py OUT.jsonl 'override override ...' ['...' ...]
    out = sys.argv[1]
    for spec in sys.argv[2:]:
        run_point(spec.split(), out, tag=spec)
