"""What the trainer sees of a corpus."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from optlaw.errors import ConfigError


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


def check_vocab_fits(corpus_vocab_size: int, model_vocab_size: int) -> None:
    """Raise a one-line ConfigError when the corpus has token ids the model cannot embed."""
    if corpus_vocab_size > model_vocab_size:
        raise ConfigError(
            f"the corpus vocabulary has {corpus_vocab_size} tokens but model.vocab_size={model_vocab_size}; "
            f"set model.vocab_size={corpus_vocab_size} (or more), or use a smaller tokenizer (data.tokenizer_vocab_size)"
        )
