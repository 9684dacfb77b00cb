"""Hyperparameters as rules of model width: the numbers a run actually uses.

The config states base values tuned at ``scaling.base_width`` and a rule; this
module turns them into per-group learning rates and weight decays for the model
at hand. ``resolve`` is pure arithmetic on configs so the run record can store
exactly what was used and a test can check the rule across widths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optlaw.errors import ConfigError
from optlaw.optim.routing import GROUP_NAMES

LR_RULES = ("none", "mup")
WD_RULES = ("coupled", "independent", "inverse_width")


def _get(cfg: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{where}.{key} is missing; set it in configs/optimizer/<name>.yaml")
    return cfg[key]


def model_width(model_cfg: Mapping[str, Any]) -> int:
    width = model_cfg.get("d_model") if model_cfg is not None else None
    if not width:
        raise ConfigError("model.d_model is missing; the optimizer's width scaling rules need the model width")
    return int(width)


def resolve(optimizer_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any]) -> dict[str, Any]:
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
    scaling = _get(optimizer_cfg, "scaling", "optimizer")
    lr_rule = str(_get(scaling, "lr_rule", "optimizer.scaling"))
    wd_rule = str(_get(scaling, "wd_rule", "optimizer.scaling"))
    if lr_rule not in LR_RULES:
        raise ConfigError(f"optimizer.scaling.lr_rule is {lr_rule!r}; use one of {', '.join(LR_RULES)}")
    if wd_rule not in WD_RULES:
        raise ConfigError(f"optimizer.scaling.wd_rule is {wd_rule!r}; use one of {', '.join(WD_RULES)}")
    base_width = int(_get(scaling, "base_width", "optimizer.scaling"))
    lr_groups = list(scaling.get("lr_groups", ["hidden_matrix"]) or [])
    for group in lr_groups:
        if group not in GROUP_NAMES:
            raise ConfigError(f"optimizer.scaling.lr_groups names {group!r}; use groups from {', '.join(GROUP_NAMES)}")
    width = model_width(model_cfg)
    lr_mult = float(optimizer_cfg.get("lr_mult", 1.0))
    if lr_mult <= 0:
        raise ConfigError(f"optimizer.lr_mult is {lr_mult}; it must be > 0")

    groups_cfg = _get(optimizer_cfg, "groups", "optimizer")
    missing = [g for g in GROUP_NAMES if g not in groups_cfg]
    if missing:
        raise ConfigError(f"optimizer.groups lacks {missing}; every routing group needs optimizer, lr, weight_decay")
    unknown = [g for g in groups_cfg if g not in GROUP_NAMES]
    if unknown:
        raise ConfigError(f"optimizer.groups has unknown group(s) {unknown}; groups are {', '.join(GROUP_NAMES)}")
    # The generic adapter takes lr / weight_decay from its kwargs when given there,
    # so `optimizer.kwargs.lr=1e-3` means what a user of that class expects.
    generic_kwargs = {
        k: v for k, v in (optimizer_cfg.get("kwargs") or {}).items() if v is not None
    } if optimizer_cfg.get("cls") else {}

    resolved_groups: dict[str, dict[str, Any]] = {}
    for group in GROUP_NAMES:
        where = f"optimizer.groups.{group}"
        gcfg = groups_cfg[group]
        algorithm = str(_get(gcfg, "optimizer", where))
        base_lr = float(generic_kwargs.get("lr", _get(gcfg, "lr", where)))
        base_wd = float(generic_kwargs.get("weight_decay", _get(gcfg, "weight_decay", where)))
        if base_lr < 0 or base_wd < 0:
            raise ConfigError(f"{where}: lr and weight_decay must be >= 0 (got {base_lr}, {base_wd})")
        width_factor = base_width / width if (lr_rule == "mup" and group in lr_groups) else 1.0
        lr = base_lr * lr_mult * width_factor
        if wd_rule == "coupled":
            weight_decay = base_wd
        elif wd_rule == "independent":
            if lr == 0 and base_wd > 0:
                raise ConfigError(f"{where}: wd_rule=independent needs lr > 0 to express the decay")
            weight_decay = base_wd / lr if lr > 0 else 0.0
        else:
            weight_decay = base_wd * base_width / width
        resolved_groups[group] = {"optimizer": algorithm, "lr": lr, "weight_decay": weight_decay}

    return {
        "name": str(optimizer_cfg.get("name", "")),
        "width": width,
        "depth": int(model_cfg.get("n_layers", 0) or 0),
        "lr_mult": lr_mult,
        "scaling": {"base_width": base_width, "lr_rule": lr_rule, "lr_groups": lr_groups, "wd_rule": wd_rule},
        "groups": resolved_groups,
    }
