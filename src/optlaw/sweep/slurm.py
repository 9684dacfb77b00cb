"""SLURM launcher through submitit: job arrays by resource class and time limit, with a throttle.

Flow: claim every point to run (owner = this launch), plan the jobs
(optlaw.sweep.slurm_plan: resource class, a time limit from each point's FLOPs, packs
of small points), submit one array per class, then write each job's id into the claims
of its points, so the claims outlive this process and stay valid while SLURM holds the
job. The command returns as soon as the arrays are queued.

A job runs its points in one worker process (optlaw.sweep.worker: imports once, one
point after another); a point with several GPUs runs under torchrun, one over several
nodes under srun + torchrun with a rendezvous on the first node.

Preemption and time limits: SLURM sends USR1 ``signal_delay_s`` before the limit; the
job forwards it to the trainer, which writes a checkpoint and exits, and submitit
requeues the job; the requeued job runs its pack again: finished points are skipped and
the interrupted one resumes from its checkpoint. ``scontrol requeue`` sends SIGTERM,
which the trainer treats the same way.

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
from optlaw.config.sweep import SlurmLauncherConfig
from optlaw.errors import UserError
from optlaw.sweep import claims
from optlaw.sweep.job import (
    _CURRENT_CHILD,
    PointProcess,
    slurm_task_id,
    train_args,
    train_command,
    wait_as_current_child,
)
from optlaw.sweep.manifest import point_by_id, read_manifest
from optlaw.sweep.slurm_plan import (JobGroup, format_minutes, partition_limit_minutes, plan_jobs,
                                     resources_for)
from optlaw.sweep.worker import WORKER_MODULE

# SLURM's pre-timeout signal goes to every process of the job step, the trainer
# included. The trainer checkpoints on USR1 (and TERM); submitit's default USR2
# would kill it outright, so submitit is told to use USR1 (its documented env var).
PREEMPT_SIGNAL = "USR1"
RENDEZVOUS_PORT = 29500

__all__ = ["resources_for", "submit", "SlurmPointJob", "dry_run_text", "multinode_command"]


class SlurmPointJob:
    """The callable submitit runs for one array task: a pack of points (picklable: plain fields only)."""

    def __init__(self, sweep_dir: str, launch_id: str, row: dict, retry_diverged: bool, python: str | None):
        self.sweep_dir = sweep_dir
        self.launch_id = launch_id
        self.row = dict(row)
        self.retry_diverged = retry_diverged
        self.python = python

    def __call__(self, pack: list[str] | str) -> dict[str, str]:
        pack = [pack] if isinstance(pack, str) else list(pack)
        job_id = slurm_task_id()
        node_rank = int(os.environ.get("SLURM_NODEID", "0") or 0)
        mine = []
        for run_id in pack:
            if node_rank > 0:  # other nodes of a multi-node point only join its rendezvous
                mine.append(run_id)
                continue
            claim = claims.read_claim(self.sweep_dir, run_id) or {}
            if claim.get("launch_id") == self.launch_id or (job_id and claim.get("slurm_job_id") == job_id):
                claims.update_claim(self.sweep_dir, run_id, slurm_job_id=job_id)
                mine.append(run_id)
                continue
            owner = {"host": os.uname().nodename, "pid": os.getpid(), "slurm_job_id": job_id,
                     "launch_id": self.launch_id, "created": time.time()}
            if claims.try_claim(self.sweep_dir, run_id, owner) is not None:
                mine.append(run_id)
        statuses = self._run(mine)
        if node_rank > 0:
            return statuses
        for run_id, status in statuses.items():
            if status in records.FINISHED:
                claims.release_claim(self.sweep_dir, run_id)
        unfinished = [r for r, status in statuses.items() if status not in records.FINISHED]
        if unfinished:
            # Stopped by a signal (the job is being requeued or cancelled) or crashed. Raising
            # records the attempt as failed in submitit's logs; the run records stay resumable
            # and a requeued job or the next launch resumes them.
            raise RuntimeError(f"{', '.join(unfinished)} stopped unfinished; see {self.sweep_dir}/logs/")
        return statuses

    def _run(self, run_ids: list[str]) -> dict[str, str]:
        sweep_dir = Path(self.sweep_dir)
        manifest = read_manifest(sweep_dir)
        python = self.python or sys.executable
        nodes, gpus = int(self.row.get("nodes") or 1), int(self.row.get("gpus_per_node") or 0)
        if nodes > 1 or gpus > 1:
            (run_id,) = run_ids  # never packed (slurm_plan._packs)
            point = point_by_id(manifest, run_id)
            argv = multinode_command(sweep_dir, point, manifest, gpus, nodes, python) if nodes > 1 \
                else train_command(sweep_dir, point, manifest, gpus, python)
            log = sweep_dir / "logs" / f"{run_id}.log"
        else:
            argv = [python, "-m", WORKER_MODULE, "pack", str(sweep_dir), *run_ids]
            if self.retry_diverged:
                argv.append("--retry-diverged")
            log = sweep_dir / "logs" / f"job-{slurm_task_id() or 'local'}.log"
        wait_as_current_child(PointProcess(argv, log))
        return {r: records.read_status(sweep_dir / point_by_id(manifest, r)["run_dir"]) for r in run_ids}

    def checkpoint(self, pack):
        """Called by submitit on the preemption signal: let the trainer checkpoint, then requeue."""
        import submitit

        child = _CURRENT_CHILD[0]
        if child is not None:
            child.forward(signal.SIGUSR1)
            try:
                child.proc.wait(timeout=max(5, _signal_budget_s() - 5))
            except subprocess.TimeoutExpired:
                pass
        return submitit.helpers.DelayedSubmission(self, pack)


def multinode_command(sweep_dir: str | Path, point: dict, manifest: dict, gpus: int, nodes: int,
                      python: str | None = None, environ: dict | None = None) -> list[str]:
    """The argv one node runs for a point over ``nodes`` nodes: torchrun joining a rendezvous on the first node.

    submitit starts the job's callable once per node (srun, one task per node); each runs
    this command with its own node rank, and torchrun's c10d rendezvous (the job id as
    its id, the first allocated node as its endpoint) forms one process group of
    ``nodes x gpus`` ranks.
    """
    env = os.environ if environ is None else environ
    head = first_node(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "localhost")
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID") or "optlaw"
    task = env.get("SLURM_ARRAY_TASK_ID")
    return [
        python or sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={nodes}", f"--nproc_per_node={max(1, gpus)}", f"--node_rank={env.get('SLURM_NODEID', '0')}",
        "--rdzv_backend=c10d", f"--rdzv_endpoint={head}:{RENDEZVOUS_PORT}",
        f"--rdzv_id={job}_{task}" if task else f"--rdzv_id={job}",
        "-m", "optlaw", *train_args(sweep_dir, point, manifest),
    ]


def first_node(nodelist: str) -> str:
    """The first host of a SLURM node list (``scontrol show hostnames``, or the list's first entry)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    first = nodelist.split(",")[0]
    if "[" in first:  # node[01-04] -> node01
        prefix, rest = first.split("[", 1)
        first = prefix + rest.split("-")[0].split(",")[0].rstrip("]")
    return first


def _use_preempt_signal() -> None:
    """submitit's signal (and the #SBATCH --signal line it writes) is USR1, which the trainer checkpoints on."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    os.environ["SUBMITIT_PREEMPT_SIGNAL"] = PREEMPT_SIGNAL
    SlurmJobEnvironment.USR_SIG = PREEMPT_SIGNAL


def _signal_budget_s() -> int:
    return int(os.environ.get("OPTLAW_SIGNAL_DELAY_S", "60"))


def plan(sweep_dir: Path, manifest: dict, run_ids: list[str], launcher: SlurmLauncherConfig) -> list[JobGroup]:
    """The arrays for ``run_ids``, the partition's limit asked from sinfo when not configured."""
    cap = launcher.max_time_min
    if cap is None:
        import shutil

        cap = partition_limit_minutes(launcher.partition) if shutil.which("sinfo") else None
    return plan_jobs(manifest, run_ids, launcher, lambda p: _waits_for_trunk(sweep_dir, p), cap)


def dry_run_text(sweep_dir: str | Path, manifest: dict, run_ids: list[str], launcher_cfg: SlurmLauncherConfig | dict) -> str:
    """Per array: the submission parameters and the #SBATCH lines submitit would submit (no SLURM call)."""
    _use_preempt_signal()
    launcher = as_config(SlurmLauncherConfig, launcher_cfg, "launcher")
    sweep_dir = Path(sweep_dir).resolve()
    lines = []
    groups = plan(sweep_dir, manifest, run_ids, launcher)
    for index, group in enumerate(groups):
        jobs = len(group.packs)
        throttle = min(launcher.array_parallelism, jobs)
        row = group.row
        packed = f", {group.points} points packed" if group.points > jobs else ""
        lines.append(
            f"slurm array {index + 1}/{len(groups)}: {jobs} jobs{packed}; partition={launcher.partition or '(default)'} "
            f"account={launcher.account or '-'} qos={launcher.qos or '-'} nodes={row.get('nodes') or 1} "
            f"gpus_per_node={row['gpus_per_node']} cpus_per_task={row['cpus_per_task']} "
            f"mem={str(row['mem_gb']) + 'G' if row['mem_gb'] else '(default)'} time={format_minutes(group.time_min)} "
            f"array=0-{jobs - 1}%{throttle}" + (" (after the trunks' jobs)" if group.waits_for_trunk else "")
        )
        for pack in group.packs:
            lines.append(f"  job: {' '.join(pack)}")
        executor = _executor(sweep_dir, launcher, row, group.time_min, manifest.get("sweep") or "optlaw", jobs)
        executor.parameters["map_count"] = jobs  # what map_array sets at submission
        # submitit's own sbatch text, so the lines shown are the lines submitted.
        script = executor._make_submission_file_text(executor._submitit_command_str, "dry-run")
        lines += [f"  {line}" for line in script.splitlines() if line.startswith("#SBATCH")]
    return "\n".join(lines)


def write_sbatch_scripts(sweep_dir: str | Path, manifest: dict, run_ids: list[str],
                         launcher_cfg: SlurmLauncherConfig | dict) -> list[Path]:
    """Fill slurm/sweep_array.sbatch from the launcher config: SWEEP_DIR/slurm/array-K.sbatch and its packs."""
    import json
    import shlex

    launcher = as_config(SlurmLauncherConfig, launcher_cfg, "launcher")
    sweep_dir = Path(sweep_dir).resolve()
    template = (Path(__file__).resolve().parents[3] / "slurm" / "sweep_array.sbatch")
    text = template.read_text() if template.exists() else None
    written = []
    for index, group in enumerate(plan(sweep_dir, manifest, run_ids, launcher)):
        row = group.row
        if text is None or int(row.get("nodes") or 1) > 1 or int(row.get("gpus_per_node") or 0) > 1:
            continue  # several processes per point: launcher=slurm (submitit) runs those
        label = f"array-{index + 1}"
        packs = sweep_dir / "slurm" / f"{label}.packs.json"
        packs.parent.mkdir(parents=True, exist_ok=True)
        packs.write_text(json.dumps(group.packs, indent=1) + "\n")
        jobs = len(group.packs)
        options = [f"--job-name=optlaw-{manifest.get('sweep') or 'sweep'}", "--nodes=1", "--ntasks-per-node=1",
                   f"--cpus-per-task={row['cpus_per_task']}", f"--time={format_minutes(group.time_min)}",
                   f"--array=0-{jobs - 1}%{min(launcher.array_parallelism, jobs)}",
                   f"--signal=B:{PREEMPT_SIGNAL}@{launcher.signal_delay_s}", "--requeue", "--open-mode=append",
                   f"--output={sweep_dir}/slurm_logs/%x-%A_%a.out"]
        if row["gpus_per_node"]:
            options.append(f"--gpus-per-node={row['gpus_per_node']}")
        if row["mem_gb"]:
            options.append(f"--mem={row['mem_gb']}G")
        for key in ("partition", "account", "qos"):
            if getattr(launcher, key):
                options.append(f"--{key}={getattr(launcher, key)}")
        for key, value in (launcher.additional_parameters or {}).items():
            options.append(f"--{key.replace('_', '-')}={value}")
        script = (text.replace("#OPTLAW_SBATCH_LINES", "\n".join(f"#SBATCH {o}" for o in options))
                  .replace("@SWEEP_DIR@", shlex.quote(str(sweep_dir)))
                  .replace("@PACKS@", shlex.quote(str(packs)))
                  .replace("@PYTHON@", shlex.quote(launcher.python or sys.executable))
                  .replace("@SETUP@", "\n".join(launcher.setup)))
        target = sweep_dir / "slurm" / f"{label}.sbatch"
        target.write_text(script)
        (sweep_dir / "slurm_logs").mkdir(exist_ok=True)
        written.append(target)
    return written


def submit(
    sweep_dir: str | Path,
    manifest: dict,
    run_ids: list[str],
    launcher_cfg: SlurmLauncherConfig | dict,
    retry_diverged: bool = False,
    out=None,
) -> list[str]:
    """Queue ``run_ids`` as job arrays; returns the SLURM job ids (one per job, a job may run a pack)."""
    import shutil

    import submitit

    out = out or sys.stdout
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: launcher=slurm needs the SLURM client on this machine; use launcher=local here")

    _use_preempt_signal()
    launcher = as_config(SlurmLauncherConfig, launcher_cfg, "launcher")
    sweep_dir = Path(sweep_dir).resolve()
    by_id = {p["run_id"]: p for p in manifest["points"]}
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
        for group in plan(sweep_dir, manifest, claimed, launcher):
            row = group.row
            dependency = None
            if group.waits_for_trunk:
                trunk_jobs = {(claims.live_claim(sweep_dir, by_id[r]["branch_from"]["run_id"]) or {}).get("slurm_job_id")
                              for pack in group.packs for r in pack}
                trunk_jobs.discard(None)
                dependency = "afterany:" + ":".join(sorted(trunk_jobs)) if trunk_jobs else None
            executor = _executor(sweep_dir, launcher, row, group.time_min, manifest.get("sweep") or "optlaw",
                                 len(group.packs), dependency)
            job = SlurmPointJob(str(sweep_dir), launch_id, row, retry_diverged, launcher.python)
            try:
                jobs = executor.map_array(job, group.packs)
            except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError, OSError) as exc:
                message = getattr(exc, "stderr", None) or getattr(exc, "output", None) or str(exc)
                if isinstance(message, bytes):
                    message = message.decode(errors="replace")
                raise UserError(f"sbatch rejected the job array: {' '.join(str(message).split())}; fix the launcher.* options") from None
            for pack, submitted in zip(group.packs, jobs):
                for run_id in pack:
                    claims.update_claim(sweep_dir, run_id, slurm_job_id=submitted.job_id)
                job_ids.append(submitted.job_id)
            first = jobs[0].job_id.split("_")[0]
            packed = f" ({group.points} points packed)" if group.points > len(jobs) else ""
            print(f"queued array {first}: {len(jobs)} jobs{packed}, time {format_minutes(group.time_min)}, {row}", file=out)
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


def _executor(sweep_dir: Path, launcher: SlurmLauncherConfig, row: dict, time_min: int, name: str, count: int,
              dependency: str | None = None):
    import submitit

    folder = launcher.folder or str(sweep_dir / "slurm_logs")
    executor = submitit.SlurmExecutor(folder=f"{folder}/%j", max_num_timeout=launcher.max_requeues, python=launcher.python)
    params = {
        "job_name": f"optlaw-{name}",
        "time": int(time_min),
        "nodes": int(row.get("nodes") or 1),
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
