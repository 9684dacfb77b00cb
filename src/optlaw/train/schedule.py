"""Learning-rate schedules as a factor of each group's peak (``base_lr``).

A schedule is a pure function of the step index and the budget plan, so a
resumed or branched run recomputes the same factor from nothing but the step.
"""

from __future__ import annotations

import math
from typing import Any

from optlaw.errors import ConfigError
from optlaw.train.budget import BudgetPlan

SCHEDULES = ("cosine", "linear", "wsd", "constant")


def check_schedule(schedule_cfg: Any) -> None:
    name = schedule_cfg.get("name")
    if name not in SCHEDULES:
        raise ConfigError(f"schedule.name={name!r} is unknown; choose one of {', '.join(SCHEDULES)}")
    floor = float(schedule_cfg.get("min_lr_ratio", 0.0))
    if not 0.0 <= floor <= 1.0:
        raise ConfigError(f"schedule.min_lr_ratio={floor} must be in [0, 1]")


def lr_factor(step: int, plan: BudgetPlan, schedule_cfg: Any) -> float:
    """Factor for the update taken at 0-based ``step``: warmup, then the named shape down to the floor."""
    name = schedule_cfg.get("name")
    floor = float(schedule_cfg.get("min_lr_ratio", 0.0))
    warmup = plan.warmup_steps
    if step < warmup:
        # (step + 1) so that the very first update already moves the weights.
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    if name == "wsd":
        start = plan.decay_start_step
        if step < start:
            return 1.0
        span = plan.total_steps - start
        progress = (step - start + 1) / span if span > 0 else 1.0
        return 1.0 - (1.0 - floor) * min(1.0, progress)
    span = plan.total_steps - warmup
    progress = (step - warmup + 1) / span if span > 0 else 1.0
    progress = min(1.0, progress)
    if name == "linear":
        return 1.0 - (1.0 - floor) * progress
    if name == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"schedule.name={name!r} is unknown; choose one of {', '.join(SCHEDULES)}")
