"""Optimizers stage: route parameters into groups and build one optimizer bundle.

``build_optimizer(model, optimizer_cfg, model_cfg) -> OptimizerBundle`` is the
entry point; see docs/optimizers.md for which implementation each name maps to.
"""

from optlaw.optim.bundle import OptimizerBundle
from optlaw.optim.factory import BUILDERS, build_optimizer
from optlaw.optim.routing import GROUP_NAMES, route_parameters

__all__ = ["BUILDERS", "GROUP_NAMES", "OptimizerBundle", "build_optimizer", "route_parameters"]
