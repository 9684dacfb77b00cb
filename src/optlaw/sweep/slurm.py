"""SLURM launcher through submitit: one job array per resource class, with a throttle.

Flow: claim every point to run (owner = this launch), submit the array, then
write each array task's job id into its claim, so the claim outlives this
process and stays valid while SLURM holds the job. The command returns as soon
as the array is queued.

Preemption and time limits: SLURM sends the preemption signal ``signal_delay_s``
before the limit; the job forwards it to the trainer, which writes a checkpoint
and exits, and submitit requeues the job; the requeued job reruns the same
``optlaw train`` command, which resumes from that checkpoint. ``scontrol requeue``
sends SIGTERM, which the trainer treats the same way.

Why submitit directly and not Hydra's submitit launcher (``--multirun``): a sweep
here is not a Hydra multirun. Points come from optlaw's own grid (per-optimizer axes,
branching off trunk runs), each must be claimed before submission so two launches
never run it twice, and arrays are grouped by resource class; the Hydra plugin
offers none of that (and its release pulls a Hydra 1.4 pre-release unless Hydra is pinned).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from optlaw import records
from optlaw.config import as_config
from optlaw.jsonio import plain
from optlaw.config.sweep import SlurmLauncherConfig
from optlaw.errors import ConfigError, UserError
from optlaw.sweep import claims
from optlaw.sweep.job import _CURRENT_CHILD, run_point_blocking, slurm_task_id

# SLURM's pre-timeout signal goes to every process of the job step, the trainer
# included. The trainer checkpoints on USR1 (and TERM); submitit's default USR2
# would kill it outright, so submitit is told to use USR1 (its documented env var).
PREEMPT_SIGNAL = "USR1"


def resources_for(launcher_cfg: SlurmLauncherConfig | dict, non_embedding_params: float | None) -> dict:
    """The first ``resources`` row whose ``max_params`` covers the point's N (as a plain dict)."""
    launcher = as_config(SlurmLauncherConfig, launcher_cfg, "launcher")  # refuses an empty table
    for row in launcher.resources:
        if row.max_params is None or non_embedding_params is None or non_embedding_params <= row.max_params:
            return plain(row)
    raise ConfigError(
        f"no launcher.resources row covers a model with {non_embedding_params:.3g} non-embedding params; "
        "add a last row with max_params: null"
    )


class SlurmPointJob:
    """The callable submitit runs for one array task (picklable: plain fields only)."""

    def __init__(self, sweep_dir: str, launch_id: str, gpus: int, retry_diverged: bool, python: str | None):
        self.sweep_dir = sweep_dir
        self.launch_id = launch_id
        self.gpus = gpus
        self.retry_diverged = retry_diverged
        self.python = python

    def __call__(self, run_id: str) -> str:
        job_id = slurm_task_id()
        claim = claims.read_claim(self.sweep_dir, run_id) or {}
        mine = claim.get("launch_id") == self.launch_id or (job_id and claim.get("slurm_job_id") == job_id)
        if mine:
            claims.update_claim(self.sweep_dir, run_id, slurm_job_id=job_id)
        else:
            owner = {"host": os.uname().nodename, "pid": os.getpid(), "slurm_job_id": job_id,
                     "launch_id": self.launch_id, "created": time.time()}
            if claims.try_claim(self.sweep_dir, run_id, owner) is None:
                return "skipped: claimed by another live owner"
        status = run_point_blocking(self.sweep_dir, run_id, gpus=self.gpus, retry_diverged=self.retry_diverged,
                                    python=self.python)
        if status in records.FINISHED:
            claims.release_claim(self.sweep_dir, run_id)
            return status
        # Not finished: stopped by a signal (the job is being requeued or cancelled)
        # or crashed. Raising records the attempt as failed in submitit's logs; the
        # run record stays resumable and a requeued job or the next launch resumes it.
        raise RuntimeError(f"{run_id} stopped with record status {status!r}; see {self.sweep_dir}/logs/{run_id}.log")

    def checkpoint(self, run_id: str):
        """Called by submitit on the preemption signal: let the trainer checkpoint, then requeue."""
        import submitit

        child = _CURRENT_CHILD[0]
        if child is not None:
            child.forward(signal.SIGUSR1)
            try:
                child.proc.wait(timeout=max(5, _signal_budget_s() - 5))
            except subprocess.TimeoutExpired:
                pass
        return submitit.helpers.DelayedSubmission(self, run_id)


def _signal_budget_s() -> int:
    return int(os.environ.get("OPTLAW_SIGNAL_DELAY_S", "60"))


def submit(
    sweep_dir: str | Path,
    manifest: dict,
    run_ids: list[str],
    launcher_cfg: SlurmLauncherConfig | dict,
    retry_diverged: bool = False,
    out=None,
) -> list[str]:
    """Queue ``run_ids`` as job arrays; returns the SLURM job ids (one per point)."""
    import shutil

    import submitit
    from submitit.slurm.slurm import SlurmJobEnvironment

    out = out or sys.stdout
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: launcher=slurm needs the SLURM client on this machine; use launcher=local here")

    os.environ["SUBMITIT_PREEMPT_SIGNAL"] = PREEMPT_SIGNAL
    SlurmJobEnvironment.USR_SIG = PREEMPT_SIGNAL

    launcher = as_config(SlurmLauncherConfig, launcher_cfg, "launcher")
    sweep_dir = Path(sweep_dir).resolve()
    by_id = {p["run_id"]: p for p in manifest["points"]}
    # Branches wait for their trunk's checkpoint: they go in later arrays that depend on the trunks.
    groups: dict[tuple, list[str]] = {}
    for run_id in run_ids:
        row = resources_for(launcher, by_id[run_id].get("non_embedding_params"))
        waits = _waits_for_trunk(sweep_dir, by_id[run_id])
        groups.setdefault((waits, tuple(sorted(row.items(), key=lambda kv: kv[0]))), []).append(run_id)
    groups = dict(sorted(groups.items(), key=lambda item: item[0][0]))  # trunks' arrays first

    launch_id = uuid.uuid4().hex[:12]
    claimed: list[str] = []
    for run_id in run_ids:
        owner = {"host": os.uname().nodename, "pid": os.getpid(), "pid_start": claims.process_start_time(os.getpid()),
                 "launch_id": launch_id, "created": time.time()}
        if claims.try_claim(sweep_dir, run_id, owner) is None:
            print(f"skip {run_id}: another live launch holds it", file=out)
        else:
            claimed.append(run_id)
    job_ids: list[str] = []
    try:
        for (waits, row_items), group_ids in groups.items():
            group_ids = [r for r in group_ids if r in claimed]
            if not group_ids:
                continue
            row = dict(row_items)
            dependency = None
            if waits:
                trunk_jobs = {(claims.live_claim(sweep_dir, by_id[r]["branch_from"]["run_id"]) or {}).get("slurm_job_id")
                              for r in group_ids}
                trunk_jobs.discard(None)
                dependency = "afterany:" + ":".join(sorted(trunk_jobs)) if trunk_jobs else None
            executor = _executor(sweep_dir, launcher, row, manifest.get("sweep") or "optlaw", len(group_ids),
                                 dependency)
            job = SlurmPointJob(str(sweep_dir), launch_id, row["gpus_per_node"], retry_diverged, launcher.python)
            try:
                jobs = executor.map_array(job, group_ids)
            except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError, OSError) as exc:
                message = getattr(exc, "stderr", None) or getattr(exc, "output", None) or str(exc)
                if isinstance(message, bytes):
                    message = message.decode(errors="replace")
                raise UserError(f"sbatch rejected the job array: {' '.join(str(message).split())}; fix the launcher.* options") from None
            for run_id, submitted in zip(group_ids, jobs):
                claims.update_claim(sweep_dir, run_id, slurm_job_id=submitted.job_id)
                job_ids.append(submitted.job_id)
            first = jobs[0].job_id.split("_")[0]
            print(f"queued array {first}: {len(jobs)} points, {row}", file=out)
    except BaseException:
        # Nothing half-submitted stays claimed: points without a job id are free again.
        for run_id in claimed:
            if not (claims.read_claim(sweep_dir, run_id) or {}).get("slurm_job_id"):
                claims.release_claim(sweep_dir, run_id)
        raise
    return job_ids


def _waits_for_trunk(sweep_dir: Path, point: dict) -> bool:
    """A branched point whose trunk checkpoint does not exist yet."""
    from optlaw.sweep.job import branch_source

    source = branch_source(sweep_dir, point)
    return source is not None and not source.exists()


def _executor(sweep_dir: Path, launcher: SlurmLauncherConfig, row: dict, name: str, count: int, dependency: str | None = None):
    import submitit

    folder = launcher.folder or str(sweep_dir / "slurm_logs")
    executor = submitit.SlurmExecutor(folder=f"{folder}/%j", max_num_timeout=launcher.max_requeues, python=launcher.python)
    params = {
        "job_name": f"optlaw-{name}",
        "time": row["time_min"],
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": row["cpus_per_task"],
        "array_parallelism": min(launcher.array_parallelism, count),
        "signal_delay_s": launcher.signal_delay_s,
        "setup": [f"export SUBMITIT_PREEMPT_SIGNAL={PREEMPT_SIGNAL}",
                  f"export OPTLAW_SIGNAL_DELAY_S={launcher.signal_delay_s}",
                  *launcher.setup],
        "stderr_to_stdout": True,
    }
    if dependency:
        params["dependency"] = dependency
    if row["gpus_per_node"]:
        params["gpus_per_node"] = row["gpus_per_node"]
    if row["mem_gb"]:
        params["mem"] = f"{row['mem_gb']}G"
    for key in ("partition", "account", "qos"):
        if getattr(launcher, key):
            params[key] = getattr(launcher, key)
    if launcher.additional_parameters:
        params["additional_parameters"] = dict(launcher.additional_parameters)
    executor.update_parameters(**params)
    return executor
