"""Route every model parameter to one optimizer group by name/type rules.

The rules come from config (``optimizer.routing``), so a user can move, say, the
head into ``hidden_matrix`` without touching code. First matching rule wins; a
parameter that no rule matches is an error, because silently leaving a weight
untrained (or giving it to Muon by accident) would corrupt a whole sweep.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from optlaw.config.optim import GROUP_NAMES, check_routing_rules
from optlaw.errors import ConfigError

__all__ = ["GROUP_NAMES", "RoutedParam", "route_parameters"]


@dataclass(frozen=True)
class RoutedParam:
    name: str
    param: torch.nn.Parameter
    group: str
    rule_index: int


def _matches(rule: Mapping[str, Any], name: str, param: torch.Tensor, module_class: str) -> bool:
    if "name" in rule and not re.search(str(rule["name"]), name):
        return False
    if "module" in rule and module_class != rule["module"] and not re.fullmatch(str(rule["module"]), module_class):
        return False
    if "ndim" in rule:
        wanted = rule["ndim"]
        wanted = list(wanted) if isinstance(wanted, Sequence) and not isinstance(wanted, str) else [wanted]
        if param.ndim not in [int(w) for w in wanted]:
            return False
    return True


def route_parameters(model: torch.nn.Module, rules: Sequence[Mapping[str, Any]]) -> list[RoutedParam]:
    """Assign each trainable parameter (tied weights counted once) to a group.

    Raises ``ConfigError`` naming the first parameter that no rule matches.
    """
    rules = list(rules or [])
    check_routing_rules(rules)  # the rules may have been edited after the config was checked
    owner_class = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            owner_class[full] = type(module).__name__
    routed: list[RoutedParam] = []
    for name, param in model.named_parameters():  # named_parameters() already drops tied duplicates
        if not param.requires_grad:
            continue
        for index, rule in enumerate(rules):
            if _matches(rule, name, param, owner_class.get(name, "")):
                routed.append(RoutedParam(name, param, str(rule["group"]), index))
                break
        else:
            raise ConfigError(
                f"parameter '{name}' (shape {tuple(param.shape)}) matches no optimizer.routing rule; "
                "add a rule for it (e.g. +optimizer.routing=[...]) or fix the rule regexes"
            )
    return routed
