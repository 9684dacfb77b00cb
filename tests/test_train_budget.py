"""Budget arithmetic and LR schedules: pure functions of the config, no model built."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from optlaw.config import compose
from optlaw.errors import ConfigError
from optlaw.train.budget import plan_budget
from optlaw.train.schedule import check_schedule, lr_factor


def _cfg(*overrides: str):
    return compose("train", list(overrides))


def test_tokens_per_param_uses_the_chosen_basis():
    cfg = _cfg("budget.tokens_per_param=20", "batch.global_tokens=1024", "batch.micro_batch_size=4", "model.seq_len=128")
    plan = plan_budget(cfg, n_total=3_000_000, n_non_embedding=1_000_000)
    assert plan.param_basis == "non_embedding" and plan.n_basis == 1_000_000
    assert plan.requested_tokens == 20_000_000
    assert plan.total_steps == 20_000_000 // 1024
    assert plan.tokens_trained == plan.total_steps * 1024 <= plan.requested_tokens
    assert plan.grad_accum_steps == 2  # 1024 / (128 * 4)
    total = plan_budget(_cfg("budget.tokens_per_param=20", "budget.param_basis=total"), 3_000_000, 1_000_000)
    assert total.n_basis == 3_000_000 and total.requested_tokens == 60_000_000


def test_accumulation_shrinks_with_world_size_and_eval_points_follow_fractions():
    cfg = _cfg("budget.tokens=81920", "batch.global_tokens=8192", "batch.micro_batch_size=16", "eval.fractions=[0.5]")
    one = plan_budget(cfg, 1, 1, world_size=1)
    two = plan_budget(cfg, 1, 1, world_size=2)
    assert (one.grad_accum_steps, two.grad_accum_steps) == (4, 2)
    assert one.total_steps == 10 and one.eval_steps == (5, 10)


def test_warmup_tokens_win_over_fraction():
    cfg = _cfg("budget.tokens=81920", "batch.global_tokens=8192", "schedule.warmup_tokens=20000")
    assert plan_budget(cfg, 1, 1).warmup_steps == 3  # ceil(20000 / 8192)
    assert plan_budget(_cfg("budget.tokens=819200", "batch.global_tokens=8192"), 1, 1).warmup_steps == 5  # 5% of 100


@pytest.mark.parametrize(
    "overrides, match",
    [
        ([], "exactly one of budget.tokens"),
        (["budget.tokens=1000000", "budget.tokens_per_param=20"], "both are set"),
        (["budget.tokens=1000000", "batch.global_tokens=1000"], "batch.global_tokens=1000 is not a multiple"),
        (["budget.tokens=100", "batch.global_tokens=8192"], "smaller than one optimizer step"),
        (["budget.tokens=81920", "batch.global_tokens=8192", "schedule.warmup_tokens=1e9"], "schedule.warmup_tokens"),
        (["budget.tokens=81920", "budget.param_basis=embedding"], "budget.param_basis"),
        (["budget.tokens=81920", "eval.fractions=[1.5]"], "eval.fractions"),
    ],
)
def test_bad_budgets_are_one_line_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        plan_budget(_cfg(*overrides), 1_000_000, 1_000_000)
    assert "\n" not in str(info.value)


def test_ddp_world_size_must_divide_the_batch():
    cfg = _cfg("budget.tokens=81920", "batch.global_tokens=2048", "batch.micro_batch_size=16", "model.seq_len=128")
    assert plan_budget(cfg, 1, 1, world_size=1).grad_accum_steps == 1
    with pytest.raises(ConfigError, match="world_size"):
        plan_budget(cfg, 1, 1, world_size=2)


def _plan(name: str, **schedule):
    cfg = _cfg("budget.tokens=819200", "batch.global_tokens=8192", f"schedule.name={name}",
               *(f"schedule.{k}={v}" for k, v in schedule.items()))
    check_schedule(cfg.schedule)
    return plan_budget(cfg, 1, 1), cfg.schedule


@pytest.mark.parametrize("name", ["cosine", "linear", "wsd", "constant"])
def test_schedules_warm_up_linearly_then_never_exceed_peak(name):
    plan, sched = _plan(name, warmup_fraction=0.1, min_lr_ratio=0.1)
    factors = [lr_factor(s, plan, sched) for s in range(plan.total_steps)]
    assert factors[: plan.warmup_steps] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert max(factors) == pytest.approx(1.0)
    assert all(0.1 - 1e-12 <= f <= 1.0 for f in factors[plan.warmup_steps:])
    expected_last = 1.0 if name == "constant" else 0.1
    assert factors[-1] == pytest.approx(expected_last)


def test_cosine_is_half_way_at_the_middle_of_the_decay():
    plan, sched = _plan("cosine", warmup_fraction=0.0, min_lr_ratio=0.0)
    mid = plan.total_steps // 2 - 1  # the update whose progress is exactly 1/2
    assert lr_factor(mid, plan, sched) == pytest.approx(0.5)
    assert all(a >= b for a, b in zip([lr_factor(s, plan, sched) for s in range(100)], [lr_factor(s, plan, sched) for s in range(1, 100)]))


def test_wsd_is_flat_until_the_decay_start_then_linear_to_the_floor():
    plan, sched = _plan("wsd", warmup_tokens=16384, decay_fraction=0.2, min_lr_ratio=0.0)
    assert plan.decay_start_step == 80
    assert [lr_factor(s, plan, sched) for s in range(2, 80)] == [1.0] * 78
    decay = [lr_factor(s, plan, sched) for s in range(80, 100)]
    assert decay == pytest.approx([1 - (i + 1) / 20 for i in range(20)])
    assert math.isclose(decay[-1], 0.0, abs_tol=1e-12)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ConfigError, match="schedule.name='step'"):
        check_schedule(OmegaConf.create({"name": "step", "min_lr_ratio": 0.1}))
