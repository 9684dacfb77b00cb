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

from optlaw.train.lock import owner_alive, process_start_time

__all__ = ["claim_path", "live_claim", "owner_alive", "process_start_time", "read_claim", "release_claim",
           "try_claim", "update_claim"]

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


def release_claim(sweep_dir: str | Path, run_id: str) -> None:
    try:
        claim_path(sweep_dir, run_id).unlink()
    except FileNotFoundError:
        pass
