"""The run record of an LLM grid point (``run.json``); see docs/run_record.md for every field."""

from __future__ import annotations

import datetime as dt
import platform
from typing import Any

from optlaw import records
from optlaw.jsonio import plain
from optlaw.train.budget import BudgetPlan


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str | None]:
    import torch

    try:
        import transformers

        transformers_version = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency
        transformers_version = None
    try:
        from importlib.metadata import version

        optlaw_version = version("optlaw")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        optlaw_version = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers_version,
        "optlaw": optlaw_version,
    }


def new_record(
    *,
    run_id: str,
    config: dict[str, Any],  # the resolved, validated TrainConfig as plain containers
    stats: Any,
    plan: BudgetPlan,
    entropy_floor_nats: float | None,
    hyperparameters: dict[str, Any],
    choices: dict[str, Any],
    machine: dict[str, Any] | None,
    branch: records.Branch | None,
    started_at: str | None,
) -> records.LLMRunRecord:
    """The record of an LLM point as it starts (status running, nothing trained yet)."""
    model = config["model"]
    return records.LLMRunRecord(
        run_id=run_id,
        task=config["task"],
        status=records.RUNNING,
        family=model["family"],
        size=model["size"],
        optimizer=records.optimizer_name(config["optimizer"]),
        seed=config["seed"],
        sweep=config["sweep_name"],
        N=plan.n_basis,
        N_total=int(stats.n_total),
        N_non_embedding=int(stats.n_non_embedding),
        param_basis=plan.param_basis,
        D=plan.tokens_trained,
        D_requested=plan.requested_tokens,
        tokens_trained=0,
        steps=plan.total_steps,
        steps_done=0,
        budget=plan.to_dict(),
        flops_per_token=float(stats.flops_per_token),
        flops=0.0,
        entropy_floor_nats=entropy_floor_nats,
        wall_time_s=0.0,
        hyperparameters=plain(hyperparameters),
        choices=plain(choices),
        machine=plain(machine),
        branch=branch,
        tuning=config["tuning"],  # where the hyperparameters came from (set by a tuning sweep)
        versions=library_versions(),
        started_at=started_at or now(),
        updated_at=now(),
        config=config,
    )
