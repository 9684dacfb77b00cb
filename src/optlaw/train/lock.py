"""One trainer per run directory: ``<run_dir>/train.lock``, and whether an owner is alive.

The lock is a file created with O_CREAT|O_EXCL (atomic on local filesystems and NFSv3+)
holding its owner: host, pid and the pid's kernel start time (a reused pid is not the
owner), plus the SLURM job id when there is one. A lock whose owner is gone (a dead
process on this host, a SLURM job no longer queued or running) is stale and taken over.
We do not use fcntl/flock locks: they are unreliable on the network filesystems run
directories live on, and cannot tell a second process who holds the run.
The sweep's claims (optlaw.sweep.claims) judge their owners with the same functions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from optlaw.errors import UserError

LOCK_NAME = "train.lock"


def process_start_time(pid: int) -> str | None:
    """Kernel start time of a process (guards against a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # Field 22; the command name (field 2) may contain spaces, so split after ')'.
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(host: str | None, pid: int | None, start: str | None) -> bool | None:
    """True/False on this host; None when the pid lives on another host (cannot tell)."""
    if pid is None:
        return False
    if host != socket.gethostname():
        return None
    current = process_start_time(int(pid))
    return current is not None and (start is None or current == start)


def slurm_job_alive(job_id: str) -> bool | None:
    """True when SLURM still has the job (pending, running, requeued); None when squeue is unavailable."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # squeue errors with "Invalid job id" once a job has left the queue.
        return False if "Invalid job id" in out.stderr else None
    states = {s.strip() for s in out.stdout.split()}
    return bool(states - {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})


def owner_alive(owner: dict) -> bool:
    """Whether a lock's or claim's owner may still be at work (unknown counts as alive: never run twice)."""
    if owner.get("slurm_job_id"):
        alive = slurm_job_alive(owner["slurm_job_id"])
        return True if alive is None else alive
    pids = [(owner.get("pid"), owner.get("pid_start")), (owner.get("child_pid"), owner.get("child_pid_start"))]
    verdicts = [pid_alive(owner.get("host"), pid, start) for pid, start in pids if pid]
    if any(v is None for v in verdicts):
        return True
    return any(verdicts)


def this_process() -> dict:
    """The owner record of this process (with the SLURM job it runs in, if any)."""
    pid = os.getpid()
    owner = {"host": socket.gethostname(), "pid": pid, "pid_start": process_start_time(pid), "created": time.time()}
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        owner["slurm_job_id"] = job
    return owner


def _holder_alive(held: dict) -> bool:
    """Whether a lock's holder still trains. A lock of our own SLURM job is from before a requeue
    or restart (SLURM still lists the job: it is us): alive only as a live process on this host."""
    mine = os.environ.get("SLURM_JOB_ID")
    if mine and str(held.get("slurm_job_id")) == mine:
        return pid_alive(held.get("host"), held.get("pid"), held.get("pid_start")) is True
    return owner_alive(held)


class RunLock:
    """``with RunLock(run_dir):`` -- this process trains ``run_dir``, or a one-line ``UserError`` says who does."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.owner: dict | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = this_process()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                held = self._read()
                if held is not None and (held.get("torn") and time.time() - held["created"] < 60
                                         or not held.get("torn") and _holder_alive(held)):
                    raise UserError(self._held_message(held)) from None
                self._remove_if(held)  # stale: its owner is gone; race once more through O_EXCL
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(owner, fh)
                fh.flush()
                os.fsync(fh.fileno())
            self.owner = owner
            return
        raise UserError(f"{self.path}: another process keeps taking this run's lock; check who trains {self.path.parent}")

    def release(self) -> None:
        if self.owner is not None and self._read() == self.owner:
            self.path.unlink(missing_ok=True)
        self.owner = None

    def _read(self) -> dict | None:
        try:
            with open(self.path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Written in one small write right after creation: an empty file's writer is between
            # the two calls (or died there); it counts as held for a minute.
            try:
                return {"torn": True, "created": self.path.stat().st_mtime}
            except FileNotFoundError:
                return None

    def _remove_if(self, seen: dict | None) -> None:
        # Delete only the stale lock we judged, not a fresh one another process just made.
        if seen is None or self._read() == seen:
            self.path.unlink(missing_ok=True)

    def _held_message(self, held: dict) -> str:
        who = f"SLURM job {held['slurm_job_id']}" if held.get("slurm_job_id") else f"process {held.get('pid')} on {held.get('host')}"
        return (f"run_dir={self.path.parent} is being trained by {who} (lock {self.path}); wait for it to end, "
                f"stop it, or use another run_dir")
