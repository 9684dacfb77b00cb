"""What a SLURM launch submits: resource class, time limit and pack of every point, no SLURM call.

Time limit of a point: its planned FLOPs over the throughput of its devices
(``launcher.throughput_flops_per_s`` per GPU, or per job on CPU), times
``launcher.time_margin``, rounded up to a step of ``TIME_STEPS_MIN`` (few distinct
limits, so few arrays), and capped by the partition's limit. A point that runs out of
time is not lost: SLURM signals it ``signal_delay_s`` before the end, it checkpoints,
and the job requeues.

Packing: points whose limit is under ``launcher.pack_minutes`` share a job, run one
after another in one worker process (optlaw.sweep.worker), up to ``pack_minutes`` of
estimated time per job. Nothing of a point depends on its job, so packing changes no
record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from optlaw.config import as_config
from optlaw.config.sweep import SlurmLauncherConfig
from optlaw.errors import ConfigError
from optlaw.jsonio import plain

# Time limits are rounded up to one of these (minutes); longer ones to whole hours.
TIME_STEPS_MIN = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 1080, 1440, 2160, 2880, 4320, 5760)


@dataclass
class JobGroup:
    """One job array: jobs of the same resources and time limit; each job runs a pack of points."""

    row: dict                     # the resources row (gpus_per_node, cpus_per_task, mem_gb, nodes, ...)
    time_min: int                 # time limit of every job of the array
    waits_for_trunk: bool         # branches whose trunk checkpoint is still to come
    packs: list[list[str]] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(len(p) for p in self.packs)


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


def round_up_minutes(minutes: float) -> int:
    for step in TIME_STEPS_MIN:
        if minutes <= step:
            return step
    return int(math.ceil(minutes / 60.0)) * 60


def estimated_minutes(point: dict, row: dict, launcher: SlurmLauncherConfig) -> float:
    """Planned FLOPs over the devices' throughput, times the margin (unrounded)."""
    devices = max(1, int(row.get("gpus_per_node") or 0)) * max(1, int(row.get("nodes") or 1))
    flops = float(point.get("flops") or 0.0)
    return flops / (launcher.throughput_flops_per_s * devices) / 60.0 * launcher.time_margin


def time_limit_min(minutes: float, row: dict, partition_limit_min: int | None) -> int:
    """The time limit of a job of ``minutes`` estimated: a fixed row limit wins; capped by the partition."""
    limit = int(row["time_min"]) if row.get("time_min") else round_up_minutes(minutes)
    return min(limit, partition_limit_min) if partition_limit_min else limit


def plan_jobs(
    manifest: dict, run_ids: list[str], launcher_cfg: SlurmLauncherConfig | dict,
    waits_for_trunk, partition_limit_min: int | None = None,
) -> list[JobGroup]:
    """The arrays to submit for ``run_ids`` (trunks' arrays first); ``waits_for_trunk(point) -> bool``."""
    launcher = as_config(SlurmLauncherConfig, launcher_cfg, "launcher")
    by_id = {p["run_id"]: p for p in manifest["points"]}
    # Resource class and waiting, in manifest order: (waits, row) -> [(run_id, minutes)]
    classes: dict[tuple, list[tuple[str, float]]] = {}
    for run_id in run_ids:
        point = by_id[run_id]
        row = resources_for(launcher, point.get("non_embedding_params"))
        key = (bool(waits_for_trunk(point)), tuple(sorted(row.items())))
        classes.setdefault(key, []).append((run_id, estimated_minutes(point, row, launcher)))
    groups: dict[tuple, JobGroup] = {}
    for (waits, row_items), members in sorted(classes.items(), key=lambda kv: kv[0][0]):
        row = dict(row_items)
        for pack, minutes in _packs(members, row, launcher.pack_minutes):
            limit = time_limit_min(minutes, row, partition_limit_min)
            group = groups.setdefault((waits, row_items, limit), JobGroup(row, limit, waits))
            group.packs.append(pack)
    return list(groups.values())


def _packs(members: list[tuple[str, float]], row: dict, pack_minutes: float | None) -> list[tuple[list[str], float]]:
    """Points under ``pack_minutes`` share jobs of up to ``pack_minutes``; the rest get a job each."""
    single_process = int(row.get("gpus_per_node") or 0) <= 1 and int(row.get("nodes") or 1) == 1
    if not pack_minutes or not single_process:
        return [([run_id], minutes) for run_id, minutes in members]
    packs: list[tuple[list[str], float]] = []
    current: list[str] = []
    total = 0.0
    for run_id, minutes in members:
        if minutes >= pack_minutes:
            packs.append(([run_id], minutes))
            continue
        if current and total + minutes > pack_minutes:
            packs.append((current, total))
            current, total = [], 0.0
        current.append(run_id)
        total += minutes
    if current:
        packs.append((current, total))
    return packs


def partition_limit_minutes(partition: str | None) -> int | None:
    """The partition's time limit from ``sinfo`` (the default partition when None); None when unlimited or unknown."""
    import subprocess

    cmd = ["sinfo", "-h", "-o", "%P %l"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        name, _, limit = line.strip().partition(" ")
        is_default = name.endswith("*")
        if (partition and name.rstrip("*") == partition) or (not partition and is_default):
            return parse_slurm_minutes(limit.strip())
    return None


def parse_slurm_minutes(text: str) -> int | None:
    """SLURM's time format (``infinite``, ``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``...) in minutes."""
    if not text or text in ("infinite", "UNLIMITED", "n/a"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        hours, minutes, seconds = (0, parts[0], 0) if not days else (parts[0], 0, 0)
    elif len(parts) == 2:
        hours, minutes, seconds = (0, parts[0], parts[1]) if not days else (parts[0], parts[1], 0)
    else:
        hours, minutes, seconds = parts
    total = (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)
    return total


def format_minutes(minutes: int) -> str:
    """SLURM's D-HH:MM:SS."""
    days, rest = divmod(int(minutes), 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def group_label(group: JobGroup, index: int) -> str:
    return f"array-{index}"


def packs_file(sweep_dir: Path, label: str) -> Path:
    return Path(sweep_dir) / "slurm" / f"{label}.packs.json"
