"""One claim per run id, so two launches of the same sweep never run a point twice.

A claim is ``<sweep_dir>/claims/<run_id>.json`` created with O_CREAT|O_EXCL (atomic
on local filesystems and on NFSv3+), holding who owns the point: a host and process
(local launcher) or a SLURM job id (SLURM launcher). A claim whose owner is gone —
process dead on this host, or SLURM job no longer queued or running — is stale and
is taken over. We write this ourselves rather than use fcntl locks because fcntl
locks die with the submitting process, while a SLURM claim must outlive it. Whether an
owner is alive is judged as for a run directory's lock (optlaw.train.lock).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from optlaw.train.lock import owner_alive, pid_alive, process_start_time

__all__ = ["claim_path", "live_claim", "owner_alive", "process_start_time", "read_claim", "release_claim",
           "try_claim", "update_claim", "clean_stale"]

CLAIMS_DIR = "claims"


def claim_path(sweep_dir: str | Path, run_id: str) -> Path:
    return Path(sweep_dir) / CLAIMS_DIR / f"{run_id}.json"


def _owner_here(pid: int | None = None) -> dict:
    pid = pid or os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": process_start_time(pid), "created": time.time()}


def read_claim(sweep_dir: str | Path, run_id: str) -> dict | None:
    try:
        with open(claim_path(sweep_dir, run_id)) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        # A claim is written in one small write right after creation; an empty file
        # means its writer is between those two calls (or died there): treat as held
        # unless it is old.
        path = claim_path(sweep_dir, run_id)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        return {"host": None, "pid": None, "torn": True, "created": time.time() - age}


def live_claim(sweep_dir: str | Path, run_id: str) -> dict | None:
    """The claim on ``run_id`` if its owner is alive, else None."""
    claim = read_claim(sweep_dir, run_id)
    if claim is None:
        return None
    if claim.get("torn"):
        return claim if time.time() - claim["created"] < 60 else None
    return claim if owner_alive(claim) else None


def try_claim(sweep_dir: str | Path, run_id: str, owner: dict | None = None) -> dict | None:
    """Claim ``run_id`` for this process (or ``owner``); None when someone alive holds it."""
    path = claim_path(sweep_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = dict(owner or _owner_here())
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if live_claim(sweep_dir, run_id) is not None:
                return None
            # Stale: remove it and race once more through O_EXCL, so only one taker wins.
            _remove_if_same(path, read_claim(sweep_dir, run_id))
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(owner, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return owner
    return None


def _remove_if_same(path: Path, seen: dict | None) -> None:
    # Only delete the stale claim we judged, not a fresh one another launcher just made.
    current = None
    try:
        with open(path) as fh:
            current = json.load(fh)
    except FileNotFoundError:
        return
    except json.JSONDecodeError:
        current = None
    if current == seen or (seen or {}).get("torn"):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def update_claim(sweep_dir: str | Path, run_id: str, **fields) -> None:
    """Add fields (child pid, SLURM job id) to a claim we hold."""
    path = claim_path(sweep_dir, run_id)
    claim = read_claim(sweep_dir, run_id) or {}
    claim.update(fields)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(claim, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def clean_stale(sweep_dir: str | Path, grace_s: float = 60.0, out=None) -> list[str]:
    """Remove the claims whose owner is gone, at the start of a launch; returns their run ids.

    A local launcher killed outright leaves its claims behind, and for a moment its
    children: they got SIGTERM from the kernel (PR_SET_PDEATHSIG, optlaw.sweep.worker)
    and are writing a checkpoint. We wait up to ``grace_s`` for such an orphan to leave,
    then stop it ourselves (SIGTERM, then SIGKILL), so the relaunch never trains on top
    of it and nothing trains unsupervised.
    """
    removed = []
    for path in sorted(Path(sweep_dir, CLAIMS_DIR).glob("*.json")):
        run_id = path.stem
        claim = read_claim(sweep_dir, run_id)
        if claim is None or claim.get("slurm_job_id") or claim.get("torn"):
            if claim is not None and live_claim(sweep_dir, run_id) is None:
                _remove_if_same(path, claim)
                removed.append(run_id)
            continue
        launcher = _pid_alive(claim.get("host"), claim.get("pid"), claim.get("pid_start"))
        child = claim.get("child_pid"), claim.get("child_pid_start")
        if launcher is not False:
            continue  # alive, or on another host: not ours to judge
        if child[0] and _pid_alive(claim.get("host"), *child):
            print(f"waiting for {run_id}'s orphaned process {child[0]} (its launcher died) to checkpoint and exit",
                  file=out, flush=True)
            _stop_orphan(claim.get("host"), int(child[0]), child[1], grace_s)
        _remove_if_same(path, claim)
        removed.append(run_id)
    return removed


def _pid_alive(host: str | None, pid: int | None, start: str | None) -> bool | None:
    """pid_alive, with an exited but unreaped process (an orphan's new parent may be slow to reap) counted dead."""
    alive = pid_alive(host, pid, start)
    return False if alive and _zombie(int(pid)) else alive


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def _stop_orphan(host: str | None, pid: int, start: str | None, grace_s: float) -> None:
    import signal

    deadline = time.time() + grace_s
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None and _pid_alive(host, pid, start):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                return
            deadline = time.time() + (grace_s if signum == signal.SIGTERM else 10)
        while time.time() < deadline and _pid_alive(host, pid, start):
            time.sleep(0.1)
        if not _pid_alive(host, pid, start):
            return


def release_claim(sweep_dir: str | Path, run_id: str) -> None:
    try:
        claim_path(sweep_dir, run_id).unlink()
    except FileNotFoundError:
        pass
