"""One factory for every optimizer: route parameters, resolve scaling, call builders.

Adding an optimizer = one schema in ``optlaw.config.optim`` (its hyperparameter
section), one ``configs/optimizer/<name>.yaml`` naming it, plus one builder registered
in ``BUILDERS`` below. A builder receives the torch param groups it owns (each with
``params``, ``lr``, ``base_lr``, ``weight_decay``, ``name``) and its typed
hyperparameter section, and returns a ``torch.optim.Optimizer``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch

from optlaw.jsonio import plain
from optlaw.config.optim import (AdamWConfig, GenericOptimizerConfig, MuonConfig, OptimizerConfig, ShampooConfig,
                                 ShampooImpl, SoapConfig, optimizer_config)
from optlaw.errors import ConfigError
from optlaw.optim.bundle import OptimizerBundle
from optlaw.optim.routing import route_parameters
from optlaw.optim.scaling import resolve

Builder = Callable[[list[dict[str, Any]], Any], torch.optim.Optimizer]

# Algorithms built for 2-D hidden matrices only: they never see embeddings, the
# head, norms or biases (their preconditioners are meaningless or huge there).
MATRIX_ONLY = {"muon", "shampoo", "soap"}


def adamw(params: list[dict[str, Any]] | list[torch.nn.Parameter], **hyperparameters: Any) -> torch.optim.AdamW:
    """torch.optim.AdamW with the kernel optlaw uses: torch's fused one on CPU and CUDA.

    A rule, with a measurement behind it (docs/optimizers.md, "Choices measured on the machine"):
    on CPU torch's foreach path is a loop of per-tensor ops, the fused kernel its one vectorised
    path (llama/1m on machine C: fused about 2 ms a step, foreach 27-33 ms); it computes the same
    update up to rounding (tests/test_optim.py). The run's AdamW and the step-cost reference
    (optlaw.optim.cost) both come from here."""
    first = params[0]
    device = (first["params"][0] if isinstance(first, dict) else first).device
    if device.type in ("cpu", "cuda"):
        return torch.optim.AdamW(params, fused=True, **hyperparameters)
    return torch.optim.AdamW(params, **hyperparameters)  # elsewhere torch picks its default


def _build_adamw(groups: list[dict[str, Any]], hp: AdamWConfig) -> torch.optim.Optimizer:
    return adamw(groups, betas=tuple(hp.betas), eps=hp.eps)


def _build_muon(groups: list[dict[str, Any]], hp: MuonConfig) -> torch.optim.Optimizer:
    from optlaw.optim.muon import OptlawMuon

    return OptlawMuon(
        groups,
        ns_dtype=hp.ns_dtype.value,  # auto: measured on this machine (optlaw.optim.muon.choose_ns_dtype)
        momentum=hp.momentum,
        nesterov=hp.nesterov,
        ns_steps=hp.ns_steps,
        ns_coefficients=tuple(hp.ns_coefficients),
        eps=hp.eps,
        adjust_lr_fn=hp.adjust_lr.value,
    )


def _build_soap(groups: list[dict[str, Any]], hp: SoapConfig) -> torch.optim.Optimizer:
    from pytorch_optimizer import SOAP

    return SOAP(
        groups,
        betas=tuple(hp.betas),
        shampoo_beta=hp.shampoo_beta,
        eps=hp.eps,
        precondition_frequency=hp.precondition_frequency,
        max_precondition_dim=hp.max_precondition_dim,
        correct_bias=hp.correct_bias,
        normalize_gradient=hp.normalize_gradient,
    )


def _build_shampoo(groups: list[dict[str, Any]], hp: ShampooConfig) -> torch.optim.Optimizer:
    if hp.impl == ShampooImpl.meta:
        return _build_meta_shampoo(groups, hp)
    from optlaw.optim.shampoo import Shampoo

    return Shampoo(
        groups,
        betas=tuple(hp.betas),
        epsilon=hp.epsilon,
        grafting_epsilon=hp.grafting_epsilon,
        block_size=hp.block_size,
        precondition_frequency=hp.precondition_frequency,
        start_preconditioning_step=hp.start_preconditioning_step,
        nesterov=hp.nesterov,
        root_dtype=hp.root_dtype.value,
    )


def _build_meta_shampoo(groups: list[dict[str, Any]], hp: ShampooConfig) -> torch.optim.Optimizer:
    try:
        from distributed_shampoo import AdamGraftingConfig, DistributedShampoo
    except ImportError:
        raise ConfigError(
            "optimizer.shampoo.impl=meta needs Meta's distributed_shampoo package "
            "(pip install git+https://github.com/facebookresearch/optimizers); or use optimizer.shampoo.impl=optlaw"
        ) from None
    beta1, beta2 = hp.betas
    return DistributedShampoo(
        groups,
        betas=(beta1, beta2),
        epsilon=hp.epsilon,
        max_preconditioner_dim=hp.block_size,
        precondition_frequency=hp.precondition_frequency,
        start_preconditioning_step=hp.start_preconditioning_step,
        use_nesterov=hp.nesterov,
        use_decoupled_weight_decay=True,
        grafting_config=AdamGraftingConfig(beta2=beta2, epsilon=hp.grafting_epsilon),
    )


def import_optimizer_class(path: str) -> type[torch.optim.Optimizer]:
    """``package.module.Class`` -> the class; libraries are imported only when named."""
    module_name, _, class_name = str(path).rpartition(".")
    if not module_name:
        raise ConfigError(f"optimizer.cls is {path!r}; give a full import path such as torch_optimizer.Lamb")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"optimizer.cls={path}: cannot import module '{module_name}' ({exc.msg}); install it or fix the path"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"optimizer.cls={path}: module '{module_name}' has no class '{class_name}'")
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer.cls={path} is not a torch.optim.Optimizer subclass")
    return cls


def _build_generic(groups: list[dict[str, Any]], hp: GenericOptimizerConfig) -> torch.optim.Optimizer:
    cls = import_optimizer_class(hp.cls)
    # lr / weight_decay already live on each param group (after scaling rules).
    kwargs = {k: v for k, v in hp.kwargs.items() if k not in ("lr", "weight_decay") and v is not None}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        return cls(groups, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"optimizer.kwargs do not fit {hp.cls}: {exc}; check the class's arguments") from None


BUILDERS: dict[str, Builder] = {
    "adamw": _build_adamw,
    "muon": _build_muon,
    "soap": _build_soap,
    "shampoo": _build_shampoo,
    "generic": _build_generic,
}


def _hyperparameters(optimizer: OptimizerConfig, algorithm: str) -> Any:
    """The typed hyperparameters a builder takes: the algorithm's section (generic: the whole config)."""
    if algorithm == "generic":
        if not isinstance(optimizer, GenericOptimizerConfig):
            raise ConfigError("optimizer.groups.*.optimizer=generic needs the generic preset (optimizer=generic, optimizer.cls=...)")
        return optimizer
    hp = getattr(optimizer, algorithm, None)
    if hp is None:
        raise ConfigError(
            f"optimizer.{algorithm} (its hyperparameters) is missing from the {optimizer.name} preset; "
            f"use optimizer={algorithm}, or a preset whose schema has a {algorithm} section"
        )
    return hp


def build_optimizer(model: torch.nn.Module, optimizer_cfg: Any, model_cfg: Any) -> OptimizerBundle:
    """Route ``model``'s parameters, apply the scaling rules and build every optimizer.

    ``optimizer_cfg`` and ``model_cfg``: composed nodes, plain dicts or their schema instances.
    """
    optimizer = optimizer_config(optimizer_cfg)
    resolved = resolve(optimizer, model_cfg)
    for group, spec in resolved["groups"].items():
        if spec["optimizer"] not in BUILDERS:
            raise ConfigError(
                f"optimizer.groups.{group}.optimizer is {spec['optimizer']!r}; registered: {', '.join(BUILDERS)}"
            )
        if spec["optimizer"] in MATRIX_ONLY and group != "hidden_matrix":
            raise ConfigError(
                f"optimizer.groups.{group}.optimizer={spec['optimizer']}: {spec['optimizer']} is for hidden 2-D "
                "matrices only; give this group adamw"
            )
    routed = route_parameters(model, optimizer.routing.rules)

    by_algorithm: dict[str, list[dict[str, Any]]] = {}
    routing_table: list[dict[str, Any]] = []
    for group in resolved["groups"]:  # fixed group order keeps state_dict layouts stable
        members = [r for r in routed if r.group == group]
        if not members:
            continue
        spec = resolved["groups"][group]
        if spec["optimizer"] in MATRIX_ONLY:
            wrong = [r.name for r in members if r.param.ndim != 2]
            if wrong:
                raise ConfigError(
                    f"parameter '{wrong[0]}' is not 2-D but was routed to hidden_matrix for {spec['optimizer']}; "
                    "fix optimizer.routing so only 2-D block weights land in hidden_matrix"
                )
        by_algorithm.setdefault(spec["optimizer"], []).append(
            {
                "params": [r.param for r in members],
                "lr": spec["lr"],
                "base_lr": spec["lr"],
                "weight_decay": spec["weight_decay"],
                "name": group,
            }
        )
        routing_table += [
            {
                "param": r.name,
                "shape": list(r.param.shape),
                "group": group,
                "optimizer": spec["optimizer"],
                "lr": spec["lr"],
                "weight_decay": spec["weight_decay"],
            }
            for r in members
        ]

    optimizers: dict[str, torch.optim.Optimizer] = {}
    hyperparameters: dict[str, dict[str, Any]] = {}
    for algorithm, groups in by_algorithm.items():
        hp = _hyperparameters(optimizer, algorithm)
        try:
            optimizers[algorithm] = BUILDERS[algorithm](groups, hp)
        except ValueError as exc:  # the optimizer's own argument checks (bad beta, lr < 0, ...)
            raise ConfigError(f"optimizer.{algorithm}: {exc}; fix it in configs/optimizer/<name>.yaml or the override") from None
        hyperparameters[algorithm] = {"cls": hp.cls, "kwargs": dict(hp.kwargs)} if algorithm == "generic" else plain(hp)
    resolved["hyperparameters"] = hyperparameters
    return OptimizerBundle(optimizers, routing_table, resolved)
