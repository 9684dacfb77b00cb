"""Budget branching vs one run per budget, side by side, at CPU scale on the synthetic corpus.

Usage: .venv/bin/python scripts/bench/bench_branching.py [--models llama/1m llama/3m]
       [--optimizers adamw muon] [--tokens 16384 32768 65536] [--parallel 2] [--work DIR]

Runs the same grid twice with `optlaw sweep` (local launcher): once with every
budget trained from scratch, once with branching (one WSD trunk per model x
optimizer; shorter budgets branch from its checkpoint at their decay start).
Both use the same WSD schedule, so every point is the same computation and has
the same run id. Prints tokens trained, summed training wall time and the
shared-exponent law (optlaw.fit.fit_shared) fitted from each grid's records.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from local_sweep import finished_records, run_sweep, sweep_definition, write_sweep

def grid_definition(name: str, args, branching: bool) -> dict:
    """One grid, with or without branching; the same WSD schedule either way (the same run ids)."""
    wsd = {"decay_fraction": args.decay_fraction, "warmup_tokens": args.warmup_tokens}
    fixed = {"batch.global_tokens": 2048, "eval.tokens": 16384, "eval.fractions": [], "progress": False,
             "schedule.name": "wsd", "schedule.decay_fraction": wsd["decay_fraction"],
             "schedule.warmup_tokens": wsd["warmup_tokens"]}
    return sweep_definition(name, models=args.models, optimizers=args.optimizers, tokens=args.tokens,
                            fixed=fixed, branching={"enabled": branching, **wsd})


def run_grid(name: str, sweep_dir: Path, config_root: Path, args, branching: bool) -> float:
    write_sweep(config_root, grid_definition(name, args, branching))
    return run_sweep(name, sweep_dir, config_root, [f"launcher.max_parallel={args.parallel}"])


def grid_cost(sweep_dir: Path) -> dict:
    tokens = wall = 0.0
    points = branches = 0
    for record in finished_records(sweep_dir):
        if record.get("status") != "done":
            continue
        branch = record.get("branch") or {}
        tokens += record["tokens_trained"] - branch.get("from_tokens", 0)
        wall += record.get("wall_time_s") or 0.0
        points += 1
        branches += bool(branch)
    return {"points": points, "branches": branches, "tokens": tokens, "wall_s": wall}


def max_loss_difference(plain_dir: Path, branched_dir: Path) -> float | str:
    """Branches are the same computation as training from scratch, so the losses should agree exactly."""
    plain = {r["run_id"]: r.get("final_val_loss") for r in finished_records(plain_dir)}
    branched = {r["run_id"]: r.get("final_val_loss") for r in finished_records(branched_dir)}
    common = [k for k in plain if k in branched and plain[k] is not None and branched[k] is not None]
    if not common:
        return "no common finished points"
    return max(abs(plain[k] - branched[k]) for k in common)


def shared_fit(sweep_dir: Path, reference: str) -> dict | str:
    try:
        from optlaw.fit import fit_shared, load_runs
    except ImportError:
        return "optlaw.fit not installed"
    try:
        result = fit_shared(load_runs([sweep_dir / "runs"]), reference=reference)
    except Exception as exc:  # a fit that cannot run is a result to show, not a crash
        return f"fit failed: {type(exc).__name__}: {exc}"
    return {str(key): value for key, value in result.params.items()}  # labels such as rho_N/muon


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["llama/1m", "llama/3m"])
    parser.add_argument("--optimizers", nargs="+", default=["adamw", "muon"])
    parser.add_argument("--tokens", nargs="+", type=int, default=[16384, 32768, 65536])
    parser.add_argument("--decay-fraction", type=float, default=0.2)
    parser.add_argument("--warmup-tokens", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--work", default=None, help="keep the sweeps here (default: a temporary folder)")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_branching_"))
    config_root = work / "configs"
    rows = {}
    for label, branching in (("one run per budget", False), ("branching", True)):
        sweep_dir = work / ("branched" if branching else "plain")
        elapsed = run_grid("bench_branched" if branching else "bench_plain", sweep_dir, config_root, args, branching)
        rows[label] = {**grid_cost(sweep_dir), "elapsed_s": elapsed, "fit": shared_fit(sweep_dir, args.optimizers[0])}

    plain, branched = rows["one run per budget"], rows["branching"]
    print(f"grid: models {args.models} x optimizers {args.optimizers} x tokens {args.tokens}; WSD decay "
          f"{args.decay_fraction}, warmup {args.warmup_tokens} tokens; synthetic corpus; work dir {work}")
    from optlaw.machine import describe

    print(f"machine: {describe()}")
    print("train wall s: sum of the records' wall_time_s; elapsed s: this run's wall clock (points run "
          f"{args.parallel} at a time); both are noisy on a shared machine, tokens are exact")
    print(f"{'':<22} {'points':>6} {'branches':>8} {'tokens trained':>15} {'train wall s':>12} {'elapsed s':>10}")
    for label, row in rows.items():
        print(f"{label:<22} {row['points']:>6} {row['branches']:>8} {row['tokens']:>15.0f} {row['wall_s']:>12.1f} "
              f"{row['elapsed_s']:>10.1f}")
    if plain["tokens"]:
        print(f"ratio branching / one run per budget: tokens {branched['tokens'] / plain['tokens']:.3f}, "
              f"train wall time {branched['wall_s'] / max(plain['wall_s'], 1e-9):.3f}")
    diff = max_loss_difference(work / "plain", work / "branched")
    print(f"largest |final_val_loss difference| between the same run id in the two grids: {diff}")
    print("shared-exponent law (L = E + A/(rho_N N)^alpha + B/(rho_D D)^beta):")
    keys = sorted({k for row in rows.values() if isinstance(row["fit"], dict) for k in row["fit"]})
    for label, row in rows.items():
        fit = row["fit"]
        text = ", ".join(f"{k}={fit[k]:.4g}" for k in keys if k in fit) if isinstance(fit, dict) else fit
        print(f"  {label:<22} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
