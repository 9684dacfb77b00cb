"""Learning-rate schedules as a factor of each group's peak (``base_lr``).

A schedule is a pure function of the step index and the budget plan, so a
resumed or branched run recomputes the same factor from nothing but the step.
"""

from __future__ import annotations

import math
from typing import Any

from optlaw.config import as_config
from optlaw.config.train import ScheduleConfig, ScheduleName
from optlaw.errors import ConfigError
from optlaw.train.budget import BudgetPlan


def check_schedule(schedule_cfg: Any) -> ScheduleConfig:
    """The schedule section as a checked ScheduleConfig (a one-line ConfigError when it is not one)."""
    return as_config(ScheduleConfig, schedule_cfg, "schedule")


def lr_factor(step: int, plan: BudgetPlan, schedule: ScheduleConfig) -> float:
    """Factor for the update taken at 0-based ``step``: warmup, then the named shape down to the floor.

    ``schedule`` is read by attribute (a ScheduleConfig or its composed node): this runs every step.
    """
    name, floor = schedule.name, schedule.min_lr_ratio
    warmup = plan.warmup_steps
    if step < warmup:
        # (step + 1) so that the very first update already moves the weights.
        return (step + 1) / warmup
    if name == ScheduleName.constant:
        return 1.0
    if name == ScheduleName.wsd:
        start = plan.decay_start_step
        if step < start:
            return 1.0
        span = plan.total_steps - start
        progress = (step - start + 1) / span if span > 0 else 1.0
        return 1.0 - (1.0 - floor) * min(1.0, progress)
    span = plan.total_steps - warmup
    progress = (step - warmup + 1) / span if span > 0 else 1.0
    progress = min(1.0, progress)
    if name == ScheduleName.linear:
        return 1.0 - (1.0 - floor) * progress
    if name == ScheduleName.cosine:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"schedule.name={name!r} is not one of: {', '.join(ScheduleName.values())}")
