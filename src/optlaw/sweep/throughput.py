"""Training throughput of this machine, measured, for the local launcher's time estimate.

The plan's hours are FLOPs / throughput. A number typed into the launcher config was
measured roughly on one CPU (2e10 FLOP/s per core; machine A of docs/benchmarks.md trained
llama/1m at 15,360 tok/s x 6.79 MFLOP/token = 1.04e11 FLOP/s on its 2 cores, 2.6x that),
so the local launcher, which trains on this very machine,
times a few real training steps (forward, backward, AdamW step) of the smallest CPU
preset and caches the result per machine, torch build and threads (optlaw.machine).
It is an estimate for a plan, per point running alone: larger models run at a higher
FLOP rate than this one, and points running side by side share the cores.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from optlaw import machine
from optlaw.config import compose

PROBE_MODEL = "llama/1m"  # the smallest model of the CPU ladder that a sweep trains
PROBE_BATCH = 8           # sequences per step (of the preset's seq_len)
PROBE_STEPS = 2           # timed after one warm-up step: ~0.7 s on one core (plus importing transformers once)


def measure_train_throughput() -> dict[str, Any]:
    """Model FLOPs per second of fwd + bwd + AdamW steps of ``PROBE_MODEL``, best of ``PROBE_STEPS``."""
    from optlaw.models import build_model, model_stats
    from optlaw.optim.factory import adamw

    model_cfg = compose("train", [f"model={PROBE_MODEL}"]).model
    torch.manual_seed(0)
    model = build_model(model_cfg)
    optimizer = adamw(list(model.parameters()), lr=1e-4)  # the kernel runs use
    seq_len = int(model_cfg.seq_len)
    tokens = torch.randint(0, int(model_cfg.vocab_size), (PROBE_BATCH, seq_len + 1), generator=torch.Generator().manual_seed(0))
    best = float("inf")
    for step in range(PROBE_STEPS + 1):
        start = time.perf_counter()
        model(tokens[:, :-1], labels=tokens[:, 1:]).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first step allocates and selects kernels
            best = min(best, time.perf_counter() - start)
    flops = model_stats(model_cfg).flops_per_token * PROBE_BATCH * seq_len
    return {"flops_per_s": flops / best, "step_s": best, "model": PROBE_MODEL, "tokens_per_step": PROBE_BATCH * seq_len}


def local_throughput() -> dict[str, Any]:
    """``measure_train_throughput()`` on this machine, from the cache when it was measured before."""
    key = {"question": "train.throughput", "version": 2,  # 2: AdamW fused, as runs now step it
           **machine.machine_key(torch.device("cpu")),
           "model": PROBE_MODEL, "batch": PROBE_BATCH}
    return machine.measured("train-throughput", key, measure_train_throughput)
