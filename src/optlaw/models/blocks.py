"""Per-block speed options of the transformer: torch.compile per block, activation checkpointing.

Both act on the decoder blocks (``model.model.layers``), as torchtitan does: compiling one
block at a time keeps compile time flat in depth (every block has the same graph, so the
compiled code is reused) and leaves the embedding and the loss (optlaw.models.loss, a
Python loop over chunks) eager. ``nn.Module.compile`` compiles in place, so parameter
names, state dicts and the optimizer routing do not change.
"""

from __future__ import annotations

import torch


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of a transformers causal LM (``model.model.layers``)."""
    return model.model.layers


def compile_blocks(model: torch.nn.Module, **compile_kwargs) -> int:
    """``torch.compile`` every decoder block in place; returns how many were compiled."""
    blocks = decoder_blocks(model)
    for block in blocks:
        block.compile(**compile_kwargs)
    return len(blocks)


def checkpoint_activations(model: torch.nn.Module) -> None:
    """Recompute each block's activations in backward instead of keeping them.

    transformers' own switch (its decoder layers are ``GradientCheckpointingLayer``s); the
    non-reentrant variant of torch.utils.checkpoint works with DDP, FSDP2 and compile.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
