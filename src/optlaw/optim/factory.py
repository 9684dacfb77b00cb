"""One factory for every optimizer: route parameters, resolve scaling, call builders.

Adding an optimizer = one ``configs/optimizer/<name>.yaml`` plus one builder
registered in ``BUILDERS`` below. A builder receives the torch param groups it
owns (each with ``params``, ``lr``, ``base_lr``, ``weight_decay``, ``name``) and
its hyperparameters from the config, and returns a ``torch.optim.Optimizer``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from optlaw.errors import ConfigError
from optlaw.optim.bundle import OptimizerBundle
from optlaw.optim.routing import route_parameters
from optlaw.optim.scaling import resolve

Builder = Callable[[list[dict[str, Any]], dict[str, Any]], torch.optim.Optimizer]

# Algorithms built for 2-D hidden matrices only: they never see embeddings, the
# head, norms or biases (their preconditioners are meaningless or huge there).
MATRIX_ONLY = {"muon", "shampoo", "soap"}


def _device_of(groups: list[dict[str, Any]]) -> torch.device:
    return groups[0]["params"][0].device


def _build_adamw(groups: list[dict[str, Any]], hp: dict[str, Any]) -> torch.optim.Optimizer:
    on_cuda = _device_of(groups).type == "cuda"
    # fused kernel on CUDA; foreach (one multi-tensor op per step) on CPU.
    return torch.optim.AdamW(
        groups,
        betas=tuple(hp["betas"]),
        eps=float(hp["eps"]),
        fused=on_cuda,
        foreach=None if on_cuda else True,
    )


_NS_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


def _build_muon(groups: list[dict[str, Any]], hp: dict[str, Any]) -> torch.optim.Optimizer:
    from optlaw.optim.muon import OptlawMuon

    ns_dtype = str(hp.get("ns_dtype", "auto"))
    if ns_dtype not in _NS_DTYPES:
        raise ConfigError(f"optimizer.muon.ns_dtype is {ns_dtype!r}; use one of {', '.join(_NS_DTYPES)}")
    adjust = str(hp["adjust_lr"])
    if adjust not in ("original", "match_rms_adamw"):
        raise ConfigError(f"optimizer.muon.adjust_lr is {adjust!r}; use original or match_rms_adamw")
    return OptlawMuon(
        groups,
        ns_dtype=_NS_DTYPES[ns_dtype],
        momentum=float(hp["momentum"]),
        nesterov=bool(hp["nesterov"]),
        ns_steps=int(hp["ns_steps"]),
        ns_coefficients=tuple(float(c) for c in hp["ns_coefficients"]),
        eps=float(hp["eps"]),
        adjust_lr_fn=adjust,
    )


def _build_soap(groups: list[dict[str, Any]], hp: dict[str, Any]) -> torch.optim.Optimizer:
    from pytorch_optimizer import SOAP

    return SOAP(
        groups,
        betas=tuple(float(b) for b in hp["betas"]),
        shampoo_beta=None if hp.get("shampoo_beta") is None else float(hp["shampoo_beta"]),
        eps=float(hp["eps"]),
        precondition_frequency=int(hp["precondition_frequency"]),
        max_precondition_dim=int(hp["max_precondition_dim"]),
        correct_bias=bool(hp.get("correct_bias", True)),
        normalize_gradient=bool(hp.get("normalize_gradient", False)),
    )


def _build_shampoo(groups: list[dict[str, Any]], hp: dict[str, Any]) -> torch.optim.Optimizer:
    impl = str(hp.get("impl", "optlaw"))
    if impl == "meta":
        return _build_meta_shampoo(groups, hp)
    if impl != "optlaw":
        raise ConfigError(f"optimizer.shampoo.impl is {impl!r}; use optlaw or meta")
    from optlaw.optim.shampoo import Shampoo

    return Shampoo(
        groups,
        betas=tuple(float(b) for b in hp["betas"]),
        epsilon=float(hp["epsilon"]),
        grafting_epsilon=float(hp["grafting_epsilon"]),
        block_size=int(hp["block_size"]),
        precondition_frequency=int(hp["precondition_frequency"]),
        start_preconditioning_step=int(hp["start_preconditioning_step"]),
        nesterov=bool(hp["nesterov"]),
        root_dtype=str(hp.get("root_dtype", "float32")),
    )


def _build_meta_shampoo(groups: list[dict[str, Any]], hp: dict[str, Any]) -> torch.optim.Optimizer:
    try:
        from distributed_shampoo import AdamGraftingConfig, DistributedShampoo
    except ImportError:
        raise ConfigError(
            "optimizer.shampoo.impl=meta needs Meta's distributed_shampoo package "
            "(pip install git+https://github.com/facebookresearch/optimizers); or use optimizer.shampoo.impl=optlaw"
        ) from None
    beta1, beta2 = (float(b) for b in hp["betas"])
    return DistributedShampoo(
        groups,
        betas=(beta1, beta2),
        epsilon=float(hp["epsilon"]),
        max_preconditioner_dim=int(hp["block_size"]),
        precondition_frequency=int(hp["precondition_frequency"]),
        start_preconditioning_step=int(hp["start_preconditioning_step"]),
        use_nesterov=bool(hp["nesterov"]),
        use_decoupled_weight_decay=True,
        grafting_config=AdamGraftingConfig(beta2=beta2, epsilon=float(hp["grafting_epsilon"])),
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


def _build_generic(groups: list[dict[str, Any]], hp: dict[str, Any]) -> torch.optim.Optimizer:
    cls = import_optimizer_class(hp["cls"])
    # lr / weight_decay already live on each param group (after scaling rules).
    kwargs = {k: v for k, v in (hp.get("kwargs") or {}).items() if k not in ("lr", "weight_decay") and v is not None}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        return cls(groups, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"optimizer.kwargs do not fit {hp['cls']}: {exc}; check the class's arguments") from None


BUILDERS: dict[str, Builder] = {
    "adamw": _build_adamw,
    "muon": _build_muon,
    "soap": _build_soap,
    "shampoo": _build_shampoo,
    "generic": _build_generic,
}


def _plain(cfg: Any) -> Any:
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def _hyperparameters(optimizer_cfg: Mapping[str, Any], algorithm: str) -> dict[str, Any]:
    if algorithm == "generic":
        if not optimizer_cfg.get("cls"):
            raise ConfigError("optimizer.cls is missing; e.g. optimizer=generic optimizer.cls=torch_optimizer.Lamb")
        return {"cls": str(optimizer_cfg["cls"]), "kwargs": dict(optimizer_cfg.get("kwargs") or {})}
    hp = optimizer_cfg.get(algorithm)
    if hp is None:
        raise ConfigError(f"optimizer.{algorithm} (its hyperparameters) is missing; copy it from configs/optimizer/{algorithm}.yaml")
    return dict(hp)


def build_optimizer(model: torch.nn.Module, optimizer_cfg: Any, model_cfg: Any) -> OptimizerBundle:
    """Route ``model``'s parameters, apply the scaling rules and build every optimizer."""
    optimizer_cfg = _plain(optimizer_cfg) or {}
    model_cfg = _plain(model_cfg) or {}
    resolved = resolve(optimizer_cfg, model_cfg)
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
    routing = optimizer_cfg.get("routing") or {}
    routed = route_parameters(model, routing.get("rules") if isinstance(routing, Mapping) else routing)

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
        hp = _hyperparameters(optimizer_cfg, algorithm)
        try:
            optimizers[algorithm] = BUILDERS[algorithm](groups, hp)
        except KeyError as exc:
            raise ConfigError(f"optimizer.{algorithm}.{exc.args[0]} is missing; see configs/optimizer/{algorithm}.yaml") from None
        except ValueError as exc:  # the optimizer's own argument checks (bad beta, lr < 0, ...)
            raise ConfigError(f"optimizer.{algorithm}: {exc}; fix it in configs/optimizer/<name>.yaml or the override") from None
        hyperparameters[algorithm] = hp
    resolved["hyperparameters"] = hyperparameters
    return OptimizerBundle(optimizers, routing_table, resolved)
