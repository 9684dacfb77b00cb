"""The CUDA-only parts of a training process, each a no-op (or the plain path) elsewhere.

The trainer calls ``prepare_model`` once after building the model and ``to_device`` for
every batch; both are what optlaw does on CUDA, and on CPU they reduce to what it did
before, so CPU runs (and their tests) keep their exact numbers.
"""

from __future__ import annotations

import torch

from optlaw.config.perf import PerfConfig


def enable_tf32(device: torch.device, enabled: bool) -> bool:
    """Let fp32 matmuls use TF32 tensor cores on CUDA (bf16 autocast matmuls are unaffected). Returns whether it did."""
    if device.type != "cuda" or not enabled:
        return False
    torch.set_float32_matmul_precision("high")
    return True


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on ``device``; on CUDA through pinned memory, so the copy is asynchronous.

    ``non_blocking=True`` from ordinary (pageable) host memory still waits for the copy;
    from pinned memory it does not, and the GPU keeps working on queued kernels meanwhile.
    """
    if device.type != "cuda":
        return batch.to(device)
    if batch.device.type == "cpu" and not batch.is_pinned():
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


def prepare_model(model: torch.nn.Module, perf: PerfConfig, device: torch.device, compile_blocks_flag: bool) -> list[str]:
    """Apply the ``perf`` options and ``compile`` to the freshly built model; returns notes for the log.

    Order matters: activation checkpointing wraps each block's call, and compiling the
    block afterwards compiles the checkpointed region.
    """
    from optlaw.models import checkpoint_activations, compile_blocks
    from optlaw.models.loss import resolve_loss_impl

    notes = []
    model.loss_impl = resolve_loss_impl(perf.loss_impl.value, device)
    model.loss_chunk_rows = perf.loss_chunk_rows
    notes.append(f"loss: {model.loss_impl}")
    if enable_tf32(device, perf.tf32):
        notes.append("tf32 matmuls")
    if perf.activation_checkpointing:
        checkpoint_activations(model)
        notes.append("activation checkpointing")
    if compile_blocks_flag:
        if device.type == "cuda":
            notes.append(f"compiled {compile_blocks(model)} blocks")
        else:
            notes.append("compile=true is ignored on CPU (torch.compile is used on CUDA only)")
    return notes
