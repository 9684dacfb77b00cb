"""Research: replay a finished tuning sweep's schedule under two launch policies (issue 13, point 3).

usage: demo_schedule_sim.py SWEEP_DIR [--parallel 2]

Drives the real planner (optlaw.sweep.tuning) on the losses and durations of a finished sweep
(each point's duration: from its log's start line to its record's last write, so per-point
overhead is included; a branch is ready once its trunk has trained to the branch's tokens) and
simulates P slots under
  rounds:    plan a round, run it (first ready point in manifest order), plan the next;
  streaming: replan whenever a point ends, a free slot takes tuned points first, then the most FLOPs
             (optlaw.sweep.local.launch_priority).
Prints each policy's simulated wall time (planning time not counted) against the sum of durations.
A model of the schedule, not a measurement: the points' durations are those of the sweep given.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

from optlaw.entry.points import POINT_NAMING
from optlaw.sweep.local import launch_priority
from optlaw.sweep.manifest import read_manifest, write_tuning_manifest
from optlaw.sweep.tuning import TuningPlanner


def durations(sweep_dir: Path) -> dict[str, float]:
    out = {}
    for run in (sweep_dir / "runs").iterdir():
        record = json.loads((run / "run.json").read_text())
        lines = [x for x in (sweep_dir / "logs" / f"{run.name}.log").read_text().splitlines() if x.startswith("# 20")]
        start = dt.datetime.fromisoformat(lines[-1].split()[1].replace("Z", "+00:00")).timestamp()
        out[run.name] = dt.datetime.fromisoformat(record["updated_at"]).timestamp() - start
    return out


def simulate(source: Path, policy: str, parallel: int) -> tuple[float, int]:
    dur = durations(source)
    definition = read_manifest(source)["definition"]
    with tempfile.TemporaryDirectory() as tmp:
        sim = Path(tmp) / "sweep"
        planner = TuningPlanner(definition, sim, list(definition.get("cli_overrides") or []), naming=POINT_NAMING)
        started: dict[str, float] = {}   # run id -> start time
        ends: dict[str, float] = {}      # run id -> end time (running or finished)
        finished: set[str] = set()
        queue: list[str] = []
        by_id: dict = {}
        t = 0.0

        def replan() -> None:
            nonlocal by_id
            plan = planner.plan()
            manifest = write_tuning_manifest(sim, definition, plan.points, [], plan.manifest_section())
            by_id = {p["run_id"]: p for p in manifest["points"]}
            queue.extend(r for r in by_id if r not in started and r not in queue and r not in finished
                         and r in {p.run_id for p in plan.points})

        def ready_at(run_id: str) -> float | None:
            branch = by_id[run_id].get("branch_from")
            if not branch:
                return 0.0
            trunk = branch["run_id"]
            if trunk in finished:
                return 0.0
            if trunk not in started:
                return None
            return started[trunk] + dur[trunk] * branch["tokens"] / by_id[trunk]["tokens"]

        replan()
        while queue or len(finished) < len(started):
            running = [r for r in started if r not in finished]
            # fill free slots with points ready now
            while len(running) < parallel:
                ready = [r for r in queue if (ready_at(r) is not None and ready_at(r) <= t)]
                if not ready:
                    break
                pick = ready[0] if policy == "rounds" else min(ready, key=lambda r: launch_priority(by_id[r]))
                queue.remove(pick)
                started[pick], ends[pick] = t, t + dur[pick]
                running.append(pick)
            # next event: a point ends, or a branch becomes ready
            candidates = [ends[r] for r in running]
            candidates += [x for x in (ready_at(r) for r in queue) if x is not None and x > t]
            if not candidates:
                if not queue:
                    break
                raise RuntimeError(f"stuck at t={t}: {queue}")
            t = min(candidates)
            done_now = [r for r in running if ends[r] <= t]
            for r in done_now:
                finished.add(r)
                (sim / "runs" / r).mkdir(parents=True, exist_ok=True)
                shutil.copy(source / "runs" / r / "run.json", sim / "runs" / r / "run.json")
            if done_now and (policy == "streaming" or (not queue and len(finished) == len(started))):
                replan()
        return t, len(finished)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("sweep_dir")
    p.add_argument("--parallel", type=int, default=2)
    a = p.parse_args()
    source = Path(a.sweep_dir)
    total = sum(durations(source).values())
    for policy in ("rounds", "streaming"):
        wall, n = simulate(source, policy, a.parallel)
        print(f"{policy:9s} {n:3d} points: simulated wall {wall:7.1f} s; sum of durations {total:.1f} s; "
              f"wall x {a.parallel} / sum = {wall * a.parallel / total:.3f}")


if __name__ == "__main__":
    main()
