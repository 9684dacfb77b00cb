"""The state of each grid point, from its run record and its claim.

States shown to users: ``done``, ``diverged``, ``failed``, ``running`` (a live
owner holds the claim: a local process or a queued/running SLURM job) and
``pending`` (nothing yet, or a record left ``running`` by an owner that died,
which is resumable from its last checkpoint). ``corrupt``: a run.json that cannot be
read; a launch keeps a copy of it and reruns the point (resuming from its checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optlaw import records
from optlaw.sweep import claims

DISPLAY_STATES = ("done", "diverged", "failed", "running", "pending", "corrupt")


@dataclass
class PointState:
    run_id: str
    label: str
    state: str
    note: str
    record: records.RunRecord | None
    claim: dict | None


def point_state(sweep_dir: str | Path, point: dict) -> PointState:
    run_dir = Path(sweep_dir) / point["run_dir"]
    claim = claims.live_claim(sweep_dir, point["run_id"])
    try:
        record = records.read_record(run_dir)
    except records.CorruptRecord as exc:
        state = "running" if claim is not None else records.CORRUPT
        return PointState(point["run_id"], point.get("label", ""), state, str(exc), None, claim)
    status = record.status if record is not None else None
    note = ""
    if status in records.FINISHED:
        state = str(status)
        if status == records.DIVERGED and record.reason:
            note = str(record.reason)
        elif record.branch:
            note = f"branch of {record.branch.get('parent_run_id')} at {record.branch.get('from_tokens')} tokens"
    elif claim is not None:
        state = "running"
        note = f"slurm job {claim['slurm_job_id']}" if claim.get("slurm_job_id") else f"{claim.get('host')}:{claim.get('child_pid') or claim.get('pid')}"
    elif status == records.FAILED:
        state = "failed"
        note = str(record.reason or "")
    elif status == records.RUNNING:
        state = "pending"
        note = "interrupted; resumes from its last checkpoint"
    else:
        state = "pending"
    return PointState(point["run_id"], point.get("label", ""), state, note, record, claim)


def needs_run(state: PointState, retry_diverged: bool = False) -> bool:
    """Whether a launch should run this point: not finished, and nobody alive owns it."""
    if state.state in ("pending", "failed", records.CORRUPT):
        return True
    return retry_diverged and state.state == "diverged"


def all_states(sweep_dir: str | Path, manifest: dict) -> list[PointState]:
    return [point_state(sweep_dir, p) for p in manifest["points"]]
