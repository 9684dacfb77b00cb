"""What the trainer sees of a corpus."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Corpus(Protocol):
    name: str
    vocab_size: int
    entropy_floor_nats: float | None  # Bayes-optimal validation loss when known, else None

    def train_batch(
        self, seed: int, step: int, micro: int, rank: int, world_size: int, micro_batch_size: int, seq_len: int
    ) -> torch.Tensor:
        """LongTensor [micro_batch_size, seq_len + 1]; a pure function of its arguments."""
        ...

    def val_batches(self, n_tokens: int, batch_size: int, seq_len: int) -> Iterator[torch.Tensor]:
        """The fixed held-out split: ceil(n_tokens / seq_len) sequences of seq_len + 1 tokens."""
        ...
