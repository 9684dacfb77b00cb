"""A grid point's command and child process, for every launcher; a SLURM job's pack of points.

``train_args`` is what trains a point (``optlaw train ...``), run by a worker
(optlaw.sweep.worker) or as its own process (``PointProcess``: torchrun points, and
``launcher.in_process=false``). ``run_sweep_pack`` runs a SLURM job's points in one
worker. One point by hand, as an sbatch task: ``python -m optlaw.sweep.job SWEEP_DIR
--index $SLURM_ARRAY_TASK_ID``. Signals meant for the point (SLURM's pre-timeout USR1,
which submitit and the sbatch template are set to send, and TERM; a USR2 is turned into
USR1) are forwarded so the trainer writes a checkpoint before the process ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from optlaw import records
from optlaw.sweep import claims
from optlaw.sweep.manifest import point_by_id, read_manifest
from optlaw.sweep.worker import RunCli, die_with_parent, run_pack


def train_args(sweep_dir: str | Path, point: dict, manifest: dict) -> list[str]:
    """``optlaw`` arguments that train ``point`` (``["train", ...]``), in a process or a worker."""
    run_dir = (Path(sweep_dir) / point["run_dir"]).resolve()
    args = ["train", *point["overrides"], f"run_dir={run_dir}"]
    source = branch_source(sweep_dir, point)
    if source is not None:
        args.append(f"init.from_checkpoint={source}")
    if manifest.get("sweep"):
        args.append(f"sweep_name={manifest['sweep']}")
    return args


def train_command(sweep_dir: str | Path, point: dict, manifest: dict, gpus: int = 0, python: str | None = None) -> list[str]:
    """The argv that trains ``point``; torchrun when the point has several GPUs."""
    python = python or sys.executable
    args = train_args(sweep_dir, point, manifest)
    if gpus > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m", "optlaw", *args]
    return [python, "-m", "optlaw", *args]


def branch_source(sweep_dir: str | Path, point: dict) -> Path | None:
    """The trunk checkpoint a branched point starts from (None for an ordinary point)."""
    branch = point.get("branch_from")
    if not branch:
        return None
    from optlaw.train.checkpoint import keep_path

    return keep_path((Path(sweep_dir) / "runs" / branch["run_id"]).resolve(), int(branch["tokens"]))


def set_aside_diverged(run_dir: Path) -> Path | None:
    """Move a diverged run aside (kept, never deleted) so a retry starts fresh."""
    if records.read_status(run_dir) != records.DIVERGED:
        return None
    target = run_dir.with_name(f"{run_dir.name}.diverged-{time.strftime('%Y%m%dT%H%M%S')}")
    shutil.move(str(run_dir), target)
    return target


class PointProcess:
    """A running ``optlaw train`` child with its log file."""

    def __init__(self, argv: list[str], log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "ab")
        self.log.write(f"\n# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {' '.join(argv)}\n".encode())
        self.log.flush()
        # Own session: a Ctrl-C in the launcher's terminal reaches the child only
        # through forward(), so it always gets the chance to checkpoint. The child gets
        # SIGTERM (checkpoint and leave) if this process dies without stopping it.
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent(os.getpid()))

    def forward(self, signum: int) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code


def run_point_blocking(
    sweep_dir: str | Path,
    run_id: str,
    gpus: int = 0,
    retry_diverged: bool = False,
    python: str | None = None,
    on_start=None,
) -> str:
    """Train one point to the end (or until a forwarded signal stops it); returns its record status."""
    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    point = point_by_id(manifest, run_id)
    run_dir = sweep_dir / point["run_dir"]
    if retry_diverged:
        set_aside_diverged(run_dir)
    child = PointProcess(train_command(sweep_dir, point, manifest, gpus, python), sweep_dir / "logs" / f"{run_id}.log")
    if on_start is not None:
        on_start(child)
    wait_as_current_child(child)
    return records.read_status(run_dir)


def wait_as_current_child(child: PointProcess) -> None:
    """Wait for ``child`` while a signal handler can find it (to forward a preemption to it)."""
    _CURRENT_CHILD[0] = child
    try:
        # Poll instead of a blocking wait: submitit's signal handler (SlurmPointJob.checkpoint)
        # waits on the same child, and Popen.wait holds a lock a handler cannot re-take.
        while child.proc.poll() is None:
            time.sleep(0.5)
        child.wait()
    finally:
        _CURRENT_CHILD[0] = None


# The child of this process, so a signal handler can forward to it.
_CURRENT_CHILD: list[PointProcess | None] = [None]


def _forward_and_exit(signum, _frame) -> None:
    child = _CURRENT_CHILD[0]
    if child is not None:
        child.forward(signal.SIGUSR1 if signum == signal.SIGUSR2 else signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the sbatch template: run the manifest point at ``--index``, claiming it for this job."""
    parser = argparse.ArgumentParser(prog="python -m optlaw.sweep.job")
    parser.add_argument("sweep_dir")
    parser.add_argument("--index", type=int, required=True, help="point index in manifest.json (SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--gpus", type=int, default=int(os.environ.get("SLURM_GPUS_ON_NODE", "0") or 0))
    parser.add_argument("--retry-diverged", action="store_true")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.sweep_dir)
    if not 0 <= args.index < len(manifest["points"]):
        print(f"error: --index {args.index} is outside the manifest's {len(manifest['points'])} points", file=sys.stderr)
        return 2
    point = manifest["points"][args.index]
    run_id = point["run_id"]
    status = records.read_status(Path(args.sweep_dir) / point["run_dir"])
    if status == records.DONE or (status == records.DIVERGED and not args.retry_diverged):
        print(f"{run_id}: already {status}; nothing to do")
        return 0
    job_id = slurm_task_id()
    owner = job_owner()
    existing = claims.read_claim(args.sweep_dir, run_id)
    mine = existing is not None and job_id is not None and existing.get("slurm_job_id") == job_id
    if not mine and claims.try_claim(args.sweep_dir, run_id, owner) is None:
        print(f"{run_id}: claimed by another live owner {claims.read_claim(args.sweep_dir, run_id)}; skipping")
        return 0
    # Signals SLURM sends before a time limit or on preemption reach the trainer,
    # which checkpoints; the template requeues the job when the point is not finished.
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(signum, _forward_and_exit)
    status = run_point_blocking(args.sweep_dir, run_id, gpus=args.gpus, retry_diverged=args.retry_diverged)
    if status in records.FINISHED:
        claims.release_claim(args.sweep_dir, run_id)
        return 0
    print(f"{run_id}: stopped with record status {status!r}; resumable from its last checkpoint")
    return 3


def job_owner() -> dict:
    """A claim's owner for this process inside a SLURM job (the job id keeps the claim valid while SLURM holds it)."""
    return {"host": os.uname().nodename, "pid": os.getpid(), "pid_start": claims.process_start_time(os.getpid()),
            "slurm_job_id": slurm_task_id(), "created": time.time()}


def slurm_task_id() -> str | None:
    """``<array job id>_<task id>`` (or the plain job id) of the SLURM job we run in."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def run_sweep_pack(run_cli: RunCli, sweep_dir: str | Path, run_ids: list[str], retry_diverged: bool = False,
                   out: TextIO | None = None) -> int:
    """A SLURM job's pack: claim each point for this job, run the unfinished ones here, release each as it finishes.

    Exit 0 when every point of the pack is finished; 3 when some stopped unfinished
    (preempted or failed: a requeued job or the next launch resumes them).
    """
    sweep_dir = Path(sweep_dir).resolve()
    manifest = read_manifest(sweep_dir)
    job_id = slurm_task_id()
    todo = []
    for run_id in run_ids:
        point = point_by_id(manifest, run_id)
        run_dir = sweep_dir / point["run_dir"]
        if retry_diverged:
            set_aside_diverged(run_dir)
        status = records.read_status(run_dir)
        if status in records.FINISHED:
            print(f"{run_id}: already {status}; nothing to do", file=out or sys.stdout, flush=True)
            if _claimed_by(sweep_dir, run_id, job_id):
                claims.release_claim(sweep_dir, run_id)
            continue
        if not _claimed_by(sweep_dir, run_id, job_id) and claims.try_claim(sweep_dir, run_id, job_owner()) is None:
            print(f"{run_id}: claimed by another live owner; skipping", file=out or sys.stdout, flush=True)
            continue
        todo.append((run_id, train_args(sweep_dir, point, manifest), str(sweep_dir / "logs" / f"{run_id}.log")))

    def release_finished(run_id: str, _code: int) -> bool:
        if records.read_status(sweep_dir / point_by_id(manifest, run_id)["run_dir"]) in records.FINISHED:
            claims.release_claim(sweep_dir, run_id)
        return True

    run_pack(run_cli, todo, on_end=release_finished, out=out)
    unfinished = [r for r, _, _ in todo
                  if records.read_status(sweep_dir / point_by_id(manifest, r)["run_dir"]) not in records.FINISHED]
    return 3 if unfinished else 0


def _claimed_by(sweep_dir: Path, run_id: str, job_id: str | None) -> bool:
    claim = claims.read_claim(sweep_dir, run_id) or {}
    return job_id is not None and claim.get("slurm_job_id") == job_id


if __name__ == "__main__":
    sys.exit(main())
