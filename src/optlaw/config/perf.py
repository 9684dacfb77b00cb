"""The ``perf`` section of the train config: throughput options that leave the computation's meaning alone.

None of these keys is part of the run id (optlaw.records.NON_SEMANTIC_KEYS): they change
speed and memory, not what is trained (the chunked loss equals the plain one to rounding).
"""

from dataclasses import dataclass

from optlaw.config.core import Choice
from optlaw.errors import ConfigError


class LossImpl(Choice):
    auto = "auto"
    chunked = "chunked"
    liger = "liger"
    full = "full"


class Sharding(Choice):
    ddp = "ddp"
    fsdp = "fsdp"


@dataclass
class PerfConfig:
    """Speed and memory options (docs/gpu.md has what each one buys)."""

    loss_impl: LossImpl = LossImpl.auto
    """auto (liger on CUDA when installed, else chunked) | chunked (pure PyTorch, no full fp32 logits) | liger (Liger-Kernel fused linear cross-entropy, CUDA) | full (logits then cross-entropy)."""
    loss_chunk_rows: int = 2048
    """Tokens per chunk of the chunked loss: its peak extra memory is rows x vocab x 4 bytes."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward (less memory, ~1/3 more forward compute)."""
    tf32: bool = True
    """On CUDA, fp32 matmuls use TF32 tensor cores (torch.set_float32_matmul_precision('high'))."""
    sharding: Sharding = Sharding.ddp
    """With several ranks: ddp (replicated model) | fsdp (FSDP2 fully_shard per block; AdamW only)."""

    def check(self) -> None:
        if self.loss_chunk_rows < 1:
            raise ConfigError(f"perf.loss_chunk_rows={self.loss_chunk_rows} must be >= 1")
