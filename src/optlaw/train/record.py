"""The run record of an LLM grid point (``run.json``); see docs/run_record.md for every field."""

from __future__ import annotations

import datetime as dt
import platform
import time
from pathlib import Path
from typing import Any

from optlaw import records
from optlaw.train.budget import BudgetPlan


def _now() -> str:
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


class RunRecord:
    """Holds ``run.json`` in memory and writes it atomically (rank 0 only) whenever it changes."""

    def __init__(self, run_dir: Path, enabled: bool, fields: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.data: dict[str, Any] = fields
        self._last_write = 0.0

    def update(self, write: bool = True, **fields: Any) -> None:
        self.data.update(fields)
        if write:
            self.write()

    def write(self) -> None:
        if not self.enabled:
            return
        self.data["updated_at"] = _now()
        records.write_record(self.run_dir, self.data)
        self._last_write = time.monotonic()

    def seconds_since_write(self) -> float:
        return time.monotonic() - self._last_write


def initial_fields(
    *,
    run_id: str,
    config: dict[str, Any],  # the resolved, validated TrainConfig as plain containers
    stats: Any,
    plan: BudgetPlan,
    entropy_floor_nats: float | None,
    hyperparameters: dict[str, Any],
    branch: dict[str, Any] | None,
    started_at: str | None,
) -> dict[str, Any]:
    model = config["model"]
    return {
        "schema_version": records.SCHEMA_VERSION,
        "run_id": run_id,
        "task": config["task"],
        "status": records.RUNNING,
        "reason": None,
        "family": model["family"],
        "size": model["size"],
        "optimizer": config["optimizer"]["name"],
        "seed": config["seed"],
        "sweep": config["sweep_name"],
        "N": plan.n_basis,
        "N_total": int(stats.n_total),
        "N_non_embedding": int(stats.n_non_embedding),
        "param_basis": plan.param_basis,
        "D": plan.tokens_trained,
        "D_requested": plan.requested_tokens,
        "tokens_trained": 0,
        "steps": plan.total_steps,
        "steps_done": 0,
        "budget": plan.to_dict(),
        "flops_per_token": float(stats.flops_per_token),
        "flops": 0.0,
        "evals": [],
        "final_val_loss": None,
        "entropy_floor_nats": entropy_floor_nats,
        "wall_time_s": 0.0,
        "mean_fwd_bwd_s": None,
        "mean_optimizer_step_s": None,
        "mean_data_wait_s": None,
        "tokens_per_s": None,
        "step_cost_ratio": None,
        "step_cost": None,
        "hyperparameters": hyperparameters,
        "branch": branch,
        "tuning": config["tuning"],  # where the hyperparameters came from (set by a tuning sweep)
        "versions": library_versions(),
        "started_at": started_at or _now(),
        "updated_at": _now(),
        "config": config,
    }
