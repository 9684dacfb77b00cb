"""Tokens the tuning protocol spends vs a full fixed grid over the same range, side by side.

Usage: .venv/bin/python scripts/bench/bench_tuning.py [--sweeps tune_smoke larger] [--work DIR]

For each sweep: (1) the tuning protocol (optlaw.sweep.tuning, rounds until every cell is
finished); (2) the fixed grid a researcher would otherwise launch: per optimizer, every
value of the protocol's log2 grid from the lowest to the highest it tried in any cell of
that optimizer, at every cell (favourable to the grid: it is told the range the protocol
found). Grid points with the protocol's run ids are not trained twice (their records are
read), but their tokens count for the grid. Prints, per sweep, the tokens each trains, the
ratio, and whether each cell's winner (lowest final validation loss) is the same.

Points are trained in this process (optlaw.entry.points.run_manifest_point: the same runs a
launcher would start) so the ~5 s of process start-up per point does not swamp the
comparison; tokens, the measured quantity, do not depend on it.

Sweeps: ``tune_smoke`` (configs/sweep/tune_smoke.yaml, 8 cells) and ``larger`` (the same
settings on 3 sizes x 3 budgets x 2 optimizers, 18 cells).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from pathlib import Path

from optlaw import records
from optlaw.config import compose
from optlaw.entry.points import POINT_NAMING, run_manifest_point
from optlaw.sweep.grid import definition_to_plain, expand
from optlaw.sweep.manifest import write_manifest
from optlaw.sweep.rounds import plan_and_write, run_rounds
from optlaw.sweep.tuning import TuningPlanner
from optlaw.sweep.tuning_state import TuningState

KEY = "optimizer.lr_mult"


def definitions(name: str) -> dict:
    definition = definition_to_plain(compose(None, ["+sweep=tune_smoke"]).sweep)
    if name == "larger":
        definition |= {"name": "tune_larger", "models": ["llama/100k", "llama/250k", "llama/400k"],
                       "tokens": [8192, 16384, 32768]}
    definition["cli_overrides"] = []
    return definition


def run_protocol(definition: dict, sweep_dir: Path) -> TuningState:
    planner = TuningPlanner(definition, sweep_dir, naming=POINT_NAMING)
    outcome = run_rounds(sweep_dir, plan_and_write(planner), lambda ids: (in_process(sweep_dir, ids), []),
                         blocking=True)
    if not outcome.complete:
        raise SystemExit(f"the protocol did not finish: {outcome.stopped}")
    return outcome.plan.state


def in_process(sweep_dir: Path, run_ids: list[str]) -> dict[str, str]:
    return {run_id: quietly(sweep_dir, run_id) for run_id in run_ids}


def quietly(sweep_dir: Path, run_id: str) -> str:
    """Train one point, its trainer's output to <sweep_dir>/logs/<run_id>.log as a launcher would."""
    log = sweep_dir / "logs" / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        return run_manifest_point(str(sweep_dir), run_id)


def grid_values(state: TuningState, optimizer: str) -> list[float]:
    """Every value of the protocol's grid between the lowest and highest tried in this optimizer's cells."""
    cells = [c for c in state.cells if c.spec.axes["optimizer"] == optimizer]
    start = cells[0].spec.starts[KEY]
    steps = [round(math.log2(v / start)) for c in cells for w in c.coordinates for v in w.values.values()]
    return [start if k == 0 else start * 2.0 ** k for k in range(min(steps), max(steps) + 1)]


def run_grid(definition: dict, state: TuningState, protocol_dir: Path, grid_dir: Path) -> dict[str, float]:
    """Train the fixed grid (reusing the protocol's runs); run id -> final loss."""
    grid = {k: v for k, v in definition.items() if k != "tuning"} | {"name": definition["name"] + "_grid"}
    grid["optimizer_axes"] = {opt: {KEY: grid_values(state, opt)} for opt in grid["optimizers"]}
    points = expand(grid, naming=POINT_NAMING)
    write_manifest(grid_dir, grid, points, [])
    losses = {}
    for point in points:
        record = records.read_record(protocol_dir / "runs" / point.run_id)
        if record is None:
            quietly(grid_dir, point.run_id)
            record = records.read_record(grid_dir / "runs" / point.run_id)
        losses[point.run_id] = record.final_val_loss if record.status == records.DONE else math.inf
    return {"points": points, "losses": losses}


def tokens_of(run_dir: Path) -> float:
    record = records.read_record(run_dir)
    return float(record.tokens_trained) - float((record.branch or {}).get("from_tokens") or 0)


def compare(name: str, work: Path) -> dict:
    definition = definitions(name)
    protocol_dir, grid_dir = work / f"{name}_protocol", work / f"{name}_grid"
    started = time.perf_counter()
    state = run_protocol(definition, protocol_dir)
    protocol_s = time.perf_counter() - started
    protocol_ids = {r for c in state.cells for w in c.coordinates for ids in w.run_ids.values() for r in ids}
    protocol_tokens = sum(tokens_of(protocol_dir / "runs" / r) for r in protocol_ids)
    grid = run_grid(definition, state, protocol_dir, grid_dir)
    grid_tokens = sum(p.tokens for p in grid["points"])
    same = 0
    rows = []
    for cell in state.cells:
        members = [p for p in grid["points"]
                   if all(p.axes.get(k) == v for k, v in cell.spec.axes.items())]
        best = min(members, key=lambda p: grid["losses"][p.run_id])
        agree = math.isclose(best.axes[KEY], cell.setting[KEY], rel_tol=1e-9)
        same += agree
        rows.append(f"  {cell.spec.label:<32} protocol {cell.setting[KEY]:>7.4g} ({cell.status})  "
                    f"grid {best.axes[KEY]:>7.4g}  {'same' if agree else 'DIFFERENT'}")
    return {"name": name, "cells": len(state.cells), "protocol_points": len(protocol_ids),
            "protocol_tokens": protocol_tokens, "grid_points": len(grid["points"]), "grid_tokens": grid_tokens,
            "same": same, "rows": rows, "protocol_s": protocol_s,
            "resolved": sum(c.resolved and not c.at_edge for c in state.cells),
            "values": {opt: grid_values(state, opt) for opt in definition["optimizers"]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", nargs="+", default=["tune_smoke", "larger"], choices=["tune_smoke", "larger"])
    parser.add_argument("--work", help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args()
    work_ctx = tempfile.TemporaryDirectory(prefix="bench_tuning_") if args.work is None else None
    work = Path(args.work) if args.work else Path(work_ctx.name)
    results = []
    for name in args.sweeps:  # each sweep's table as soon as it is measured (the larger one takes long)
        results.append(compare(name, work))
        report(results)
    if work_ctx is not None:
        work_ctx.cleanup()
    return 0


def report(results: list[dict]) -> None:
    print("tokens to find each cell's best lr_mult: tuning protocol vs a fixed grid over the range it explored")
    print(f"{'sweep':<12} {'cells':>5} {'protocol pts':>12} {'tokens':>10} {'grid pts':>9} {'tokens':>10} "
          f"{'ratio':>6} {'same winner':>11} {'resolved':>8}")
    for r in results:
        print(f"{r['name']:<12} {r['cells']:>5} {r['protocol_points']:>12} {r['protocol_tokens']:>10.4g} "
              f"{r['grid_points']:>9} {r['grid_tokens']:>10.4g} {r['protocol_tokens'] / r['grid_tokens']:>6.3f} "
              f"{r['same']:>5}/{r['cells']:<5} {r['resolved']:>4}/{r['cells']}")
    for r in results:
        values = "; ".join(f"{opt} {v[0]:g}..{v[-1]:g} ({len(v)} values)" for opt, v in r["values"].items())
        print(f"\n{r['name']}: grid values {values}; protocol wall time {r['protocol_s']:.0f} s (in-process)")
        print("\n".join(r["rows"]), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
