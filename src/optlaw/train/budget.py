"""From a token budget and a batch to steps, accumulation, warmup and eval points.

Everything here is arithmetic on the config and the model's parameter counts, so
it runs (and rejects bad input) before any model is built or any data is read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from optlaw.config import as_config
from optlaw.config.train import (BatchConfig, BudgetConfig, EvalConfig, ParamBasis, ScheduleConfig, ScheduleName,
                                 exactly_one_budget_error)
from optlaw.errors import ConfigError


@dataclass(frozen=True)
class BudgetPlan:
    """How one grid point spends its tokens. Steps count optimizer updates."""

    param_basis: str
    n_basis: int                 # N the budget refers to (non-embedding or total)
    requested_tokens: int        # D as asked for (tokens, or tokens_per_param * N)
    global_batch_tokens: int     # tokens per optimizer step over all ranks
    seq_len: int
    micro_batch_size: int        # sequences per forward pass per rank
    world_size: int
    grad_accum_steps: int        # micro-batches per rank per optimizer step
    total_steps: int
    warmup_steps: int
    decay_start_step: int        # first step of the WSD decay (== total_steps for other schedules)
    eval_steps: tuple[int, ...]  # evaluate after these many completed steps (the last is total_steps)

    @property
    def tokens_trained(self) -> int:
        """D as trained: whole steps only, so at most one batch below ``requested_tokens``."""
        return self.total_steps * self.global_batch_tokens

    def tokens_at(self, step: int) -> int:
        return step * self.global_batch_tokens

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["eval_steps"] = list(self.eval_steps)
        out["tokens_trained"] = self.tokens_trained
        return out


def requested_budget_tokens(budget_cfg: Any, n_total: int, n_non_embedding: int) -> tuple[int, int, str]:
    """(D requested, N on the chosen basis, basis). Exactly one of tokens / tokens_per_param."""
    budget = as_config(BudgetConfig, budget_cfg, "budget")
    if budget.tokens is None and budget.tokens_per_param is None:
        raise exactly_one_budget_error(both=False)
    basis = budget.param_basis.value
    n_basis = n_non_embedding if budget.param_basis == ParamBasis.non_embedding else n_total
    if budget.tokens is not None:
        return int(budget.tokens), n_basis, basis
    return int(round(budget.tokens_per_param * n_basis)), n_basis, basis


def plan_budget(cfg: Any, n_total: int, n_non_embedding: int, world_size: int = 1) -> BudgetPlan:
    """Steps, accumulation, warmup and eval points for the config ``cfg`` (the root `train` config:
    a composed node, a TrainConfig, or anything with budget/batch/schedule/eval/model sections)."""
    requested, n_basis, basis = requested_budget_tokens(cfg.budget, n_total, n_non_embedding)
    batch = as_config(BatchConfig, cfg.batch, "batch")
    schedule = as_config(ScheduleConfig, cfg.schedule, "schedule")
    evaluation = as_config(EvalConfig, cfg.eval, "eval")
    seq_len = int(cfg.model.seq_len)
    micro, global_tokens = batch.micro_batch_size, batch.global_tokens
    tokens_per_micro_round = seq_len * micro * world_size
    if global_tokens % tokens_per_micro_round:
        lower = max(tokens_per_micro_round, global_tokens // tokens_per_micro_round * tokens_per_micro_round)
        raise ConfigError(
            f"batch.global_tokens={global_tokens} is not a multiple of seq_len x batch.micro_batch_size x world_size "
            f"= {seq_len} x {micro} x {world_size} = {tokens_per_micro_round}; use e.g. batch.global_tokens={lower} "
            f"or {lower + tokens_per_micro_round}, or change batch.micro_batch_size"
        )
    grad_accum = global_tokens // tokens_per_micro_round
    total_steps = requested // global_tokens
    if total_steps < 1:
        raise ConfigError(
            f"the token budget ({requested} tokens) is smaller than one optimizer step "
            f"(batch.global_tokens={global_tokens}); raise the budget or lower batch.global_tokens"
        )
    warmup_steps = _warmup_steps(schedule, total_steps, global_tokens)
    decay_start = _decay_start_step(schedule, total_steps, warmup_steps)
    eval_steps = _eval_steps(evaluation.fractions, total_steps, evaluation.at_start)
    return BudgetPlan(
        param_basis=basis,
        n_basis=int(n_basis),
        requested_tokens=requested,
        global_batch_tokens=global_tokens,
        seq_len=seq_len,
        micro_batch_size=micro,
        world_size=world_size,
        grad_accum_steps=grad_accum,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        decay_start_step=decay_start,
        eval_steps=eval_steps,
    )


def _warmup_steps(schedule: ScheduleConfig, total_steps: int, global_tokens: int) -> int:
    # warmup_tokens (absolute) wins over warmup_fraction: budget branching needs the
    # warmup to be the same whatever the final budget is.
    if schedule.warmup_tokens is not None:
        steps = math.ceil(float(schedule.warmup_tokens) / global_tokens)
        key = f"schedule.warmup_tokens={schedule.warmup_tokens}"
    else:
        steps = int(round(schedule.warmup_fraction * total_steps))
        key = f"schedule.warmup_fraction={schedule.warmup_fraction}"
    if steps > total_steps:
        raise ConfigError(f"{key} gives {steps} warmup steps, more than the run's {total_steps} steps; lower it")
    return steps


def _decay_start_step(schedule: ScheduleConfig, total_steps: int, warmup_steps: int) -> int:
    if schedule.name != ScheduleName.wsd:
        return total_steps
    return max(warmup_steps, total_steps - int(round(schedule.decay_fraction * total_steps)))


def _eval_steps(fractions: list[float], total_steps: int, at_start: bool) -> tuple[int, ...]:
    steps = {total_steps}
    if at_start:
        steps.add(0)
    for fraction in fractions:
        steps.add(min(total_steps, max(1, int(round(fraction * total_steps)))))
    return tuple(sorted(steps))
