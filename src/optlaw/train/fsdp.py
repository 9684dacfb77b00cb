"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for models that DDP cannot hold, with AdamW.

Each transformer block is its own FSDP unit and the root holds the embedding, the final
norm and the head, as torchtitan shards LLaMA: a block's weights are gathered just before
its forward/backward and freed after, so a rank holds 1/world of the weights, gradients and
AdamW state. Parameters become DTensors; AdamW updates each shard elementwise, so it is
exact under sharding.

Muon, Shampoo and SOAP are not: each needs the *whole* matrix of a parameter for its
update (Newton-Schulz orthogonalisation; Kronecker-factor preconditioners and their
eigenbases), and a shard is a slice of rows. They would need the gradient gathered per
matrix on one rank (or redistributed, as in Distributed Shampoo's and Muon's
"gather, compute on an owner rank, scatter" designs) -- not written here, so
``perf.sharding=fsdp`` with them is refused before any compute (``check_sharding``).

Checkpoints stay ordinary full checkpoints: every rank joins the gathers (``full_state``),
rank 0 writes; a resume reshards them (``load_sharded``). So a sharded run's checkpoint
loads anywhere, and the other way round.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from optlaw.config.perf import Sharding
from optlaw.errors import ConfigError

SHARDABLE_OPTIMIZERS = ("adamw",)


def uses_fsdp(sharding: Sharding, world_size: int) -> bool:
    return sharding == Sharding.fsdp and world_size > 1


def check_sharding(sharding: Sharding, optimizer_cfg: Any) -> None:
    """Refuse FSDP with an optimizer that needs whole matrices (before anything is built)."""
    from optlaw.config.optim import GROUP_NAMES

    if sharding != Sharding.fsdp:
        return
    kinds = {str(getattr(optimizer_cfg.groups, group).optimizer) for group in GROUP_NAMES}
    unsupported = sorted(kinds - set(SHARDABLE_OPTIMIZERS))
    if unsupported:
        raise ConfigError(
            f"perf.sharding=fsdp supports only {', '.join(SHARDABLE_OPTIMIZERS)}; {', '.join(unsupported)} needs whole "
            "weight matrices (docs/gpu.md, 'Sharding'); use perf.sharding=ddp"
        )


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """``fully_shard`` each decoder block, then the root (in place; names stay)."""
    from torch.distributed.fsdp import fully_shard

    from optlaw.models.blocks import decoder_blocks

    for block in decoder_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def no_grad_sync(model: torch.nn.Module):
    """Skip the gradient all-reduce (DDP) / reduce-scatter (FSDP2) for a micro-batch that is not the step's last."""
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        return _fsdp_no_sync(model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_tensor(value: Any) -> Any:
    """A DTensor gathered to the whole tensor (a collective: every rank must call it); anything else as is."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def full_state(tree: Any) -> Any:
    """``tree`` (a state dict, nested) with every DTensor gathered; same order on every rank."""
    if isinstance(tree, dict):
        return {k: full_state(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [full_state(v) for v in tree]
    return full_tensor(tree)


def load_sharded(model: torch.nn.Module, bundle: Any, saved: dict[str, Any]) -> None:
    """Load a full checkpoint into a sharded model and its optimizers: each tensor cut to this rank's shard."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if isinstance(like, DTensor) and full.shape == like.shape:
            return distribute_tensor(full.to(like.device), like.device_mesh, like.placements)
        return full.to(like.device) if isinstance(full, torch.Tensor) else full

    params = dict(model.named_parameters())
    model.load_state_dict({k: shard_like(v, params[k]) if k in params else v for k, v in saved["model"].items()})
    states = saved["optimizer"]["optimizers"]
    for name, optimizer in bundle.optimizers.items():
        order = [p for group in optimizer.param_groups for p in group["params"]]
        state = states[name]
        state["state"] = {idx: {k: shard_like(v, order[int(idx)]) if isinstance(v, torch.Tensor) else v
                                for k, v in entry.items()} for idx, entry in state["state"].items()}
        optimizer.load_state_dict(state)
