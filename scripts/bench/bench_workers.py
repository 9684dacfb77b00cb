"""Local launcher with in-process workers vs one `optlaw train` process per point, side by side.

Usage: .venv/bin/python scripts/bench/bench_workers.py [--models llama/1m] [--optimizers adamw muon]
       [--tokens 4096 8192 16384] [--seeds 0 1] [--parallel 2] [--repeats 1] [--work DIR]

Runs the same grid of small CPU points with `optlaw sweep` twice per repeat, alternating
the order: once with `launcher.in_process=false` (a fresh Python, torch, transformers
and corpus per point) and once with workers (`launcher.in_process=true`: import once,
train point after point). For each it prints the sweep's wall time, the sum of its
points' training wall times (`wall_time_s` of the records) and their ratio: the
overhead a launch adds on top of training (1.0 = none; with `--parallel P` the ideal is
1/P). It also checks that both runs give the same final losses.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from local_sweep import finished_records, run_sweep, sweep_definition, write_sweep

# 1024 tokens a step = 8 sequences of 128 in one forward pass (the default micro batch of 16
# would not divide it: the sweep refused every point).
FIXED = {"cpu_threads": 1, "batch.global_tokens": 1024, "batch.micro_batch_size": 8, "eval.tokens": 4096,
         "eval.fractions": [], "progress": False}
NO_BRANCHING = {"enabled": False, "decay_fraction": 0.2, "warmup_tokens": None}


def grid_definition(args: argparse.Namespace) -> dict:
    return sweep_definition("bench_workers", models=args.models, optimizers=args.optimizers, tokens=args.tokens,
                            seeds=args.seeds, fixed=FIXED, branching=NO_BRANCHING)


def run_once(sweep_dir: Path, config_root: Path, parallel: int, in_process: bool) -> dict:
    wall = run_sweep("bench_workers", sweep_dir, config_root, [
        f"launcher.max_parallel={parallel}", f"launcher.in_process={'true' if in_process else 'false'}"])
    records = finished_records(sweep_dir)
    assert all(r["status"] == "done" for r in records), "a point did not finish"
    return {"wall": wall, "train": sum(r["wall_time_s"] for r in records), "points": len(records),
            "losses": {r["run_id"]: r["final_val_loss"] for r in records}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["llama/1m"])
    parser.add_argument("--optimizers", nargs="+", default=["adamw", "muon"])
    parser.add_argument("--tokens", nargs="+", type=int, default=[4096, 8192, 16384])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--parallel", type=int, default=2, help="launcher.max_parallel (default 2: one per core)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="folder for the sweeps (default: a temporary one)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_workers_"))
    config_root = work / "configs"
    write_sweep(config_root, grid_definition(args))
    results: dict[bool, list[dict]] = {False: [], True: []}
    for repeat in range(args.repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        for in_process in order:
            name = f"{'workers' if in_process else 'processes'}-{repeat}"
            results[in_process].append(run_once(work / name, config_root, args.parallel, in_process))
    print(f"grid: {results[False][0]['points']} points ({' '.join(args.models)} x {' '.join(args.optimizers)} x "
          f"{args.tokens} tokens x seeds {args.seeds}), max_parallel={args.parallel}, {args.repeats} repeat(s), "
          f"cpu_count={os.cpu_count()}")
    print(f"{'launcher':<28} {'sweep wall s':>12} {'sum of training s':>18} {'wall / training':>16}")
    for in_process, label in ((False, "one process per point"), (True, "in-process workers")):
        for r in results[in_process]:
            print(f"{label:<28} {r['wall']:>12.1f} {r['train']:>18.1f} {r['wall'] / r['train']:>16.3f}")
    process_wall = sum(r["wall"] for r in results[False])
    worker_wall = sum(r["wall"] for r in results[True])
    print(f"sweep wall time, workers / processes: {worker_wall / process_wall:.3f}")
    same = all(a["losses"] == b["losses"] for a, b in zip(results[False], results[True]))
    print(f"final losses identical per run id: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
