"""Training stage: one LLM grid point from config to run directory.

``train(cfg)`` is the entry point; ``plan_budget`` turns a budget and a batch into
steps; ``run_id`` names an LLM point. See docs/run_record.md for what a run writes.
"""

from optlaw.train.budget import BudgetPlan, plan_budget
from optlaw.train.identity import run_id, run_label
from optlaw.train.signals import PREEMPTED_EXIT_CODE

__all__ = ["BudgetPlan", "plan_budget", "run_id", "run_label", "PREEMPTED_EXIT_CODE", "train"]


def train(cfg):  # noqa: ANN001, ANN201 - thin lazy wrapper, see trainer.train
    """Train one grid point (imports torch models lazily)."""
    from optlaw.train.trainer import train as _train

    return _train(cfg)
