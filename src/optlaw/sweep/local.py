"""Local launcher: run the points of a sweep on this machine, N at a time.

Points run in ``max_parallel`` worker processes that import torch and optlaw once and
train point after point in-process (``optlaw.sweep.worker``); ``in_process=False``
starts one ``optlaw train`` process per point instead. Each point is claimed before it
starts and released when it ends, so a second launcher on the same sweep skips it.
Ctrl-C (or SIGTERM) is forwarded to the running points, which checkpoint and stay
resumable. Children get SIGTERM from the kernel if the launcher dies (SIGKILL
included), so nothing trains on unsupervised.
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optlaw import records
from optlaw.sweep import claims
from optlaw.sweep.job import PointProcess, branch_source, set_aside_diverged, train_args
from optlaw.sweep.manifest import read_manifest
from optlaw.sweep.worker import WORKER_MODULE, die_with_parent

# A point whose worker died under it (segfault, OOM kill) is rerun this many times in a
# fresh worker, resuming from its checkpoint; after that it is left for the next launch.
WORKER_CRASH_RETRIES = 1


class LaunchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a local launch after its running points checkpointed.

    A KeyboardInterrupt, so whatever called the launch (a tuning round, ``optlaw demo``'s
    fit) does not go on with partial results; the command exits 128 + the signal number
    (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Ended:
    run_id: str
    code: int | None   # exit code of the point; None when its worker died under it
    how: str = ""      # how the worker died


class _ProcessSlot:
    """One fresh ``optlaw train`` process per point."""

    def __init__(self, python: str):
        self.python = python
        self.child: PointProcess | None = None
        self.run_id: str | None = None

    @property
    def pid(self) -> int | None:
        return self.child.proc.pid if self.child else None

    def start(self, run_id: str, argv: list[str], log: Path) -> None:
        self.run_id = run_id
        self.child = PointProcess([self.python, "-m", "optlaw", *argv], log)

    def poll(self) -> Ended | None:
        if self.child is None or self.child.proc.poll() is None:
            return None
        ended = Ended(self.run_id, self.child.wait())
        self.child, self.run_id = None, None
        return ended

    def forward(self, signum: int) -> None:
        if self.child is not None:
            self.child.forward(signum)

    def close(self) -> None:
        pass


class _WorkerSlot:
    """A worker process (optlaw.sweep.worker) that trains the points it is sent, one at a time."""

    def __init__(self, python: str, log: Path):
        self.python, self.log_path = python, log
        self.proc: subprocess.Popen | None = None
        self.replies: queue_module.Queue = queue_module.Queue()
        self.run_id: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", WORKER_MODULE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, start_new_session=True, preexec_fn=die_with_parent(os.getpid()),
            )
        self.replies = queue_module.Queue()
        # A thread per worker reads its replies, so the launcher's loop never blocks on a pipe.
        threading.Thread(target=self._read, args=(self.proc.stdout, self.replies), daemon=True).start()

    @staticmethod
    def _read(stream, replies: queue_module.Queue) -> None:
        for line in stream:
            try:
                replies.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        replies.put(None)  # end of the pipe: the worker is gone

    def start(self, run_id: str, argv: list[str], log: Path) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._spawn()
        self.run_id = run_id
        request = {"run_id": run_id, "argv": argv, "log": str(log)}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # died already: poll() reports it

    def poll(self) -> Ended | None:
        if self.run_id is None:
            return None
        while True:
            try:
                reply = self.replies.get_nowait()
            except queue_module.Empty:
                return None
            if reply is None:  # the worker died with our point in hand
                code = self.proc.wait()
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                ended, self.run_id, self.proc = Ended(self.run_id, None, how), None, None
                return ended
            if reply.get("run_id") == self.run_id:
                ended, self.run_id = Ended(self.run_id, int(reply["code"])), None
                return ended

    def forward(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Let an idle worker leave (end of its request pipe); a busy one was sent a stop signal."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.forward(signal.SIGKILL)
            self.proc.wait()


def run_local(
    sweep_dir: str | Path,
    run_ids: list[str],
    max_parallel: int = 1,
    retry_diverged: bool = False,
    out=None,
    in_process: bool = True,
    more: Callable[[], list[str]] | None = None,
) -> dict[str, str]:
    """Run ``run_ids`` (already filtered to those needing a run); returns run_id -> final record status.

    ``more`` (a tuning sweep's planner, optlaw.sweep.rounds) is asked for further points each time
    a point ends; the points it returns (already in the manifest) join the queue at once, so a
    slot never waits for the rest of a round. A free slot takes the ready point that comes first
    in ``launch_priority``: tuned points (later rounds and predictions wait on them), then the most FLOPs.

    Raises LaunchInterrupted when Ctrl-C or SIGTERM stopped it (the running points checkpointed).
    """
    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    out = out or sys.stdout
    by_id = {p["run_id"]: p for p in manifest["points"]}
    queue = list(run_ids)
    planning_error: list[BaseException] = []
    python = sys.executable
    logs = sweep_dir / "logs"
    slots = [_WorkerSlot(python, logs / f"worker-{i}.log") if in_process else _ProcessSlot(python)
             for i in range(max(1, max_parallel))]
    results: dict[str, str] = {}
    crashes: dict[str, int] = {}
    stop = {"signal": None}
    eta = _EtaClock(by_id, run_ids)

    def running() -> list:
        return [slot for slot in slots if slot.run_id is not None]

    def on_signal(signum, _frame):
        stop["signal"] = signum
        for slot in running():
            slot.forward(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue or running():
            for slot in slots:
                if slot.run_id is not None or stop["signal"] is not None:
                    continue
                ready = sorted((r for r in queue if _trunk_ready(sweep_dir, by_id[r])),
                               key=lambda r: (r not in crashes, *launch_priority(by_id[r])))
                while ready:
                    run_id = ready.pop(0)
                    queue.remove(run_id)
                    if claims.try_claim(sweep_dir, run_id) is None:
                        print(f"skip {run_id}: another live launcher holds it", file=out, flush=True)
                        continue
                    point = by_id[run_id]
                    status = records.read_status(sweep_dir / point["run_dir"])
                    if status == records.DONE or (status == records.DIVERGED and not retry_diverged):
                        # Another launch finished it between our look at the records and the claim.
                        claims.release_claim(sweep_dir, run_id)
                        continue
                    if retry_diverged:
                        set_aside_diverged(sweep_dir / point["run_dir"])
                    slot.start(run_id, train_args(sweep_dir, point, manifest), logs / f"{run_id}.log")
                    claims.update_claim(sweep_dir, run_id, child_pid=slot.pid,
                                        child_pid_start=claims.process_start_time(slot.pid))
                    print(f"start {run_id}", file=out, flush=True)
                    break
            if stop["signal"] is not None:
                queue.clear()
            if queue and not running() and not any(_trunk_ready(sweep_dir, by_id[r]) for r in queue):
                # Branches whose trunk checkpoint never appeared (trunk failed or run elsewhere).
                for run_id in queue:
                    print(f"blocked {run_id}: trunk checkpoint {branch_source(sweep_dir, by_id[run_id])} is missing; "
                          "finish the trunk run first", file=out, flush=True)
                queue.clear()
            for slot in running():
                ended = slot.poll()
                if ended is None:
                    continue
                run_id = ended.run_id
                claims.release_claim(sweep_dir, run_id)
                status = records.read_status(sweep_dir / by_id[run_id]["run_dir"])
                log = logs / f"{run_id}.log"
                if ended.code is None and status not in records.FINISHED and stop["signal"] is None \
                        and crashes.get(run_id, 0) < WORKER_CRASH_RETRIES:
                    crashes[run_id] = crashes.get(run_id, 0) + 1
                    queue.insert(0, run_id)
                    print(f"rerun {run_id}: its worker died ({ended.how}); resuming it in a fresh worker "
                          f"(log: {log})", file=out, flush=True)
                    continue
                results[run_id] = status
                eta.finished(run_id)
                if ended.code is None:
                    detail = f" (worker died: {ended.how}; log: {log})"
                else:
                    detail = "" if ended.code == 0 else f" (exit code {ended.code}; log: {log})"
                print(f"end   {run_id}: {status}{detail} | {_progress(results, running(), queue)}{eta.text()}",
                      file=out, flush=True)
                if more is not None and stop["signal"] is None and not planning_error:
                    try:
                        added = [r for r in more() if r not in results and r not in queue
                                 and all(slot.run_id != r for slot in slots)]
                    except Exception as exc:  # noqa: BLE001  (raised after the running points end)
                        planning_error.append(exc)
                        queue.clear()
                        print(f"planning failed ({exc}); finishing the running points", file=out, flush=True)
                        continue
                    if added:
                        manifest = read_manifest(sweep_dir)
                        by_id = {p["run_id"]: p for p in manifest["points"]}
                        queue += added
                        eta.add(by_id, added)
            time.sleep(0.05 if in_process else 0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for slot in slots:
            slot.close()
    if stop["signal"] is not None:
        print("interrupted: running points checkpointed; launch again to resume", file=out, flush=True)
        raise LaunchInterrupted(stop["signal"])
    if planning_error:
        raise planning_error[0]
    return results


def launch_priority(point: dict) -> tuple:
    """Which ready point a free slot takes first (smallest key): a tuned point before any other (the
    next round of its cell, and the predictions of its group, wait on it), then the most FLOPs first
    (longest first keeps the tail short; a trunk has more FLOPs than its branches)."""
    tuned = (point.get("tuning") or {}).get("source") == "tuned"
    return (not tuned, -float(point.get("flops") or 0.0))


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

    def add(self, by_id: dict, run_ids: list[str]) -> None:
        for run_id in run_ids:
            self.flops[run_id] = float(by_id[run_id].get("flops") or 0.0)
            self.total += self.flops[run_id]

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


def _progress(results: dict[str, str], running: list, queue: list) -> str:
    counts: dict[str, int] = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    finished = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{len(results)} finished ({finished}), {len(running)} running, {len(queue)} queued"
