"""Hyperparameters as rules of model width: the numbers a run actually uses.

The config states base values tuned at ``scaling.base_width`` and a rule; this
module turns them into per-group learning rates and weight decays for the model
at hand. ``resolve`` is pure arithmetic on configs so the run record can store
exactly what was used and a test can check the rule across widths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optlaw.jsonio import plain
from optlaw.config.optim import GROUP_NAMES, LrRule, OptimizerConfig, WdRule, optimizer_config
from optlaw.errors import ConfigError


def model_shape(model_cfg: Any) -> tuple[int, int | None]:
    """(width, depth) of a model config; the scaling rules need only these, so a mapping with
    just ``d_model`` (and optionally ``n_layers``) is enough."""
    values = model_cfg if isinstance(model_cfg, Mapping) else plain(model_cfg)
    width = (values or {}).get("d_model")
    if not width:
        raise ConfigError("model.d_model is missing; the optimizer's width scaling rules need the model width")
    depth = values.get("n_layers")
    return int(width), None if depth is None else int(depth)


def resolve(optimizer_cfg: Any, model_cfg: Any) -> dict[str, Any]:
    """Per-group optimizer, lr and weight_decay after ``lr_mult`` and the width rules.

    lr rules (applied to the groups listed in ``scaling.lr_groups``):
      none: lr = base_lr * lr_mult
      mup:  lr = base_lr * lr_mult * base_width / width  (muP for Adam-type hidden matrices,
            Yang et al. 2022, Tensor Programs V, table 3)
    weight-decay rules (torch semantics: each step multiplies weights by 1 - lr_t * weight_decay):
      coupled:       weight_decay = base value
      independent:   base value is the per-step decay at peak LR (Wortsman et al. 2023,
                     "Small-scale proxies for large-scale Transformer training instabilities"),
                     so weight_decay = base / lr and the decay does not move with lr_mult or width
      inverse_width: weight_decay = base * base_width / width
    """
    optimizer: OptimizerConfig = optimizer_config(optimizer_cfg)  # checks lr_mult, groups, lr_groups
    scaling = optimizer.scaling
    width, depth = model_shape(model_cfg)

    resolved_groups: dict[str, dict[str, Any]] = {}
    for group in GROUP_NAMES:
        where = f"optimizer.groups.{group}"
        base_lr, base_wd = optimizer.base_values(group)
        width_factor = scaling.base_width / width if (scaling.lr_rule == LrRule.mup and group in scaling.lr_groups) else 1.0
        lr = base_lr * optimizer.lr_mult * width_factor
        if scaling.wd_rule == WdRule.coupled:
            weight_decay = base_wd
        elif scaling.wd_rule == WdRule.independent:
            if lr == 0 and base_wd > 0:
                raise ConfigError(f"{where}: wd_rule=independent needs lr > 0 to express the decay")
            weight_decay = base_wd / lr if lr > 0 else 0.0
        else:
            weight_decay = base_wd * scaling.base_width / width
        resolved_groups[group] = {"optimizer": getattr(optimizer.groups, group).optimizer, "lr": lr, "weight_decay": weight_decay}

    return {
        "name": optimizer.name,
        "width": width,
        "depth": depth,
        "lr_mult": optimizer.lr_mult,
        "scaling": plain(scaling),
        "groups": resolved_groups,
    }
