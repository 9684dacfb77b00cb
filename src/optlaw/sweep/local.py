"""Local launcher: run the points of a sweep on this machine, N at a time.

Each point is claimed before it starts and released when its process ends, so a
second launcher on the same sweep skips it. Ctrl-C (or SIGTERM) is forwarded to
the running points, which checkpoint and stay resumable.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from optlaw import records
from optlaw.sweep import claims
from optlaw.sweep.job import PointProcess, branch_source, set_aside_diverged, train_command
from optlaw.sweep.manifest import read_manifest


def run_local(
    sweep_dir: str | Path,
    run_ids: list[str],
    max_parallel: int = 1,
    retry_diverged: bool = False,
    out=None,
) -> dict[str, str]:
    """Run ``run_ids`` (already filtered to those needing a run); returns run_id -> final record status."""
    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    out = out or sys.stdout
    by_id = {p["run_id"]: p for p in manifest["points"]}
    queue = list(run_ids)
    running: dict[str, PointProcess] = {}
    results: dict[str, str] = {}
    skipped: list[str] = []
    stop = {"signal": None}
    eta = _EtaClock(by_id, run_ids)

    def on_signal(signum, _frame):
        stop["signal"] = signum
        for child in running.values():
            child.forward(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue or running:
            while queue and len(running) < max(1, max_parallel) and stop["signal"] is None:
                ready = [r for r in queue if _trunk_ready(sweep_dir, by_id[r])]
                if not ready:
                    break
                run_id = ready[0]
                queue.remove(run_id)
                if claims.try_claim(sweep_dir, run_id) is None:
                    skipped.append(run_id)
                    print(f"skip {run_id}: another live launcher holds it", file=out, flush=True)
                    continue
                point = by_id[run_id]
                status = records.read_status(sweep_dir / point["run_dir"])
                if status == records.DONE or (status == records.DIVERGED and not retry_diverged):
                    # Another launch finished it between our look at the records and the claim.
                    claims.release_claim(sweep_dir, run_id)
                    skipped.append(run_id)
                    continue
                if retry_diverged:
                    set_aside_diverged(sweep_dir / point["run_dir"])
                child = PointProcess(train_command(sweep_dir, point, manifest), sweep_dir / "logs" / f"{run_id}.log")
                claims.update_claim(sweep_dir, run_id, child_pid=child.proc.pid,
                                    child_pid_start=claims.process_start_time(child.proc.pid))
                running[run_id] = child
                print(f"start {run_id}", file=out, flush=True)
            if stop["signal"] is not None:
                queue.clear()
            if queue and not running and not any(_trunk_ready(sweep_dir, by_id[r]) for r in queue):
                # Branches whose trunk checkpoint never appeared (trunk failed or run elsewhere).
                for run_id in queue:
                    print(f"blocked {run_id}: trunk checkpoint {branch_source(sweep_dir, by_id[run_id])} is missing; "
                          "finish the trunk run first", file=out, flush=True)
                queue.clear()
            for run_id, child in list(running.items()):
                if child.proc.poll() is None:
                    continue
                code = child.wait()
                del running[run_id]
                claims.release_claim(sweep_dir, run_id)
                status = records.read_status(sweep_dir / by_id[run_id]["run_dir"])
                results[run_id] = status
                eta.finished(run_id)
                detail = "" if code == 0 else f" (exit code {code}; log: {sweep_dir / 'logs' / (run_id + '.log')})"
                print(f"end   {run_id}: {status}{detail} | {_progress(results, running, queue)}{eta.text()}", file=out, flush=True)
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop["signal"] is not None:
        print("interrupted: running points checkpointed; launch again to resume", file=out, flush=True)
    return results


def _trunk_ready(sweep_dir: Path, point: dict) -> bool:
    source = branch_source(sweep_dir, point)
    return source is None or source.exists()


class _EtaClock:
    """Time left, from the FLOPs finished so far and the wall time they took.

    Points differ in cost by orders of magnitude, so counting points would mislead;
    FLOPs from the manifest are the planned cost (branches train less, which makes the
    estimate err on the long side).
    """

    def __init__(self, by_id: dict, run_ids: list[str]):
        self.start = time.perf_counter()
        self.flops = {r: float(by_id[r].get("flops") or 0.0) for r in run_ids}
        self.total = sum(self.flops.values())
        self.done = 0.0

    def finished(self, run_id: str) -> None:
        self.done += self.flops.get(run_id, 0.0)

    def text(self) -> str:
        if self.done <= 0 or self.total <= 0:
            return ""
        elapsed = time.perf_counter() - self.start
        left = elapsed * (self.total - self.done) / self.done
        return f" | elapsed {_clock(elapsed)}, ~{_clock(left)} left"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _progress(results: dict[str, str], running: dict, queue: list) -> str:
    counts: dict[str, int] = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    finished = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{len(results)} finished ({finished}), {len(running)} running, {len(queue)} queued"
