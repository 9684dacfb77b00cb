"""The tiny LLaMA the trainer tests run (shared by test_train.py and test_train_processes.py)."""

from __future__ import annotations

import pytest
import torch

# A ~76k-parameter LLaMA on 32-token sequences: a step takes milliseconds.
TINY_LLM = [
    "model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.n_kv_heads=2", "model.head_dim=16",
    "model.ffn_hidden=64", "model.seq_len=32", "batch.micro_batch_size=4",
    "eval.tokens=1024", "progress=false", "device=cpu",
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Bitwise comparisons between runs need the same reduction order; one thread also
    # keeps the tests polite on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
