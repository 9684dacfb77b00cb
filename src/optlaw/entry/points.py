"""Grid points of every task: the root config each composes, its run id, and running it.

``llm`` points are trained by ``optlaw.train``; ``random_features`` and ``quadratic`` are
proxy tasks run by ``optlaw.proxy``. Only this layer knows both, so a stage below that
names points of any task (the sweep) is handed ``POINT_NAMING`` from here instead of
importing upward (docs/design.md).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from optlaw.errors import ConfigError
from optlaw.records import RunRecord
from optlaw.sweep.grid import PointNaming
from optlaw.train.identity import run_id as llm_run_id


def task_of(overrides: list[str]) -> str:
    """The task ``optlaw train <overrides>`` runs: the last ``task=`` override, else ``llm``."""
    task = "llm"
    for item in overrides:
        if item.startswith("task="):
            task = item.split("=", 1)[1]
    return task


def root_config(overrides: list[str]) -> str:
    """The root config these overrides compose: ``train``, or ``task_<t>`` for a proxy task."""
    task = task_of(overrides)
    return "train" if task == "llm" else f"task_{task}"


def run_id(config: dict[str, Any]) -> str:
    """The run id of a resolved config (plain dict) of any task: ``<label>-<semantic hash>``."""
    if config.get("task", "llm") == "llm":
        return llm_run_id(config)
    # Lazily, here and below: a proxy point needs none of the LLM stack and an LLM point none of proxy.
    from optlaw.proxy import point

    return point.run_id(config)


POINT_NAMING = PointNaming(root_config=root_config, run_id=run_id)


def run_point(cfg: DictConfig) -> RunRecord:
    """Run the point described by ``cfg`` (a composed config) and return its run record."""
    task = cfg.get("task", "llm")
    if task == "llm":
        from optlaw.train.trainer import train

        return train(cfg)
    from optlaw.proxy import point

    if task in point.TASKS:
        return point.run(cfg)
    raise ConfigError(f"task={task!r} is unknown; choose llm, {', '.join(point.TASKS)}")


def run_manifest_point(sweep_dir: str, run_id: str) -> str:
    """Train one point of a sweep's manifest in this process, with exactly the arguments its launcher would
    give `optlaw train` (run_dir, branch checkpoint, sweep name); returns its record's status.

    For callers that run many tiny points and would spend most of their time starting processes (the
    tuning benchmark, tests); launchers keep one process per point so a crash cannot take them down.
    """
    from optlaw.config import compose
    from optlaw.sweep.job import train_command
    from optlaw.sweep.manifest import point_by_id, read_manifest

    manifest = read_manifest(sweep_dir)
    argv = train_command(sweep_dir, point_by_id(manifest, run_id), manifest)
    overrides = argv[argv.index("train") + 1:]
    return str(run_point(compose(root_config(overrides), overrides)).status)
