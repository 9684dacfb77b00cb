"""Run one grid point of any task: ``llm`` trains a language model, the rest are proxy tasks."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from optlaw.errors import ConfigError

PROXY_TASKS = ("random_features", "quadratic")


def run_point(cfg: DictConfig) -> dict[str, Any]:
    """Run the point described by ``cfg`` (a composed config) and return its run record."""
    task = cfg.get("task", "llm")
    if task == "llm":
        from optlaw.train.trainer import train

        return train(cfg)
    if task in PROXY_TASKS:
        # Imported lazily: proxy tasks are a later stage and need none of the LLM stack.
        from optlaw.proxy.point import run

        return run(cfg)
    raise ConfigError(f"task={task!r} is unknown; choose llm, {', '.join(PROXY_TASKS)}")
