"""Step cost of an optimizer relative to AdamW on the same parameters.

The compute-based scaling law charges each optimizer its step time, so the run
record stores ``step_cost_ratio`` = (bundle step time) / (plain AdamW step time)
measured side by side on a copy of the model: the live model and its optimizer
state are never touched.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from optlaw.optim.factory import build_optimizer


def reference_adamw(params: list[torch.nn.Parameter]) -> torch.optim.AdamW:
    """AdamW as the ``adamw`` builder makes it (fused on CUDA, foreach on CPU), over ``params``."""
    on_cuda = params[0].device.type == "cuda"
    return torch.optim.AdamW(params, lr=1e-4, fused=on_cuda, foreach=None if on_cuda else True)


def amortization_steps(resolved: dict[str, Any]) -> int:
    """Steps that cover one preconditioner refresh, so its cost is averaged in."""
    periods = [int(hp.get("precondition_frequency", 1)) for hp in resolved.get("hyperparameters", {}).values()]
    return max([1, *periods])


def _timed_steps(step, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def measure_step_cost_ratio(
    model: torch.nn.Module, optimizer_cfg: Any, model_cfg: Any, rounds: int = 3, seed: int = 0
) -> dict[str, float]:
    """Median over ``rounds`` of interleaved timings: the bundle's step vs AdamW's step.

    Returns ``optimizer_step_s``, ``adamw_step_s`` and ``step_cost_ratio``. Each round
    times enough steps to include one preconditioner refresh (Shampoo/SOAP).
    """
    clone = copy.deepcopy(model)
    params = [p for p in clone.parameters() if p.requires_grad]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for p in params:
        p.grad = (torch.randn(p.shape, generator=generator) * 1e-3).to(p.device, p.dtype)
    device = params[0].device
    bundle = build_optimizer(clone, optimizer_cfg, model_cfg)
    adamw = reference_adamw(params)
    steps = max(5, amortization_steps(bundle.resolved))
    bundle.step()  # state allocation and first-step work are not the per-step cost
    adamw.step()
    ours, reference = [], []
    for _ in range(rounds):
        ours.append(_timed_steps(bundle.step, steps, device))
        reference.append(_timed_steps(adamw.step, steps, device))
    optimizer_s, adamw_s = statistics.median(ours), statistics.median(reference)
    return {"optimizer_step_s": optimizer_s, "adamw_step_s": adamw_s, "step_cost_ratio": optimizer_s / adamw_s}
