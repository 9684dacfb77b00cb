"""Step cost of an optimizer relative to AdamW on the same parameters and gradients.

The compute-based scaling law charges each optimizer its step time, so every run
records ``step_cost_ratio`` = (fwd_bwd + this optimizer's step) / (fwd_bwd + an AdamW
step). ``measure_step_cost`` is the one measurement; the trainer calls it at the end of
a run. Why it is taken the way it is:

- side by side, interleaved: windows of this optimizer's steps alternate with windows of
  AdamW's, because timings taken minutes apart on a shared machine are not comparable;
- each window spans one preconditioner refresh (Shampoo/SOAP recompute their bases every
  k steps), so the amortised cost is charged, not the cheap in-between step;
- medians over the repeats: one hiccup from a neighbour process does not set the cost;
- the reference is AdamW as optlaw builds it (``optlaw.optim.factory.adamw``: torch's
  fused kernel), on a copy of the same parameters and gradients.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from optlaw.optim.bundle import OptimizerBundle
from optlaw.optim.factory import adamw


def reference_adamw(params: list[torch.nn.Parameter]) -> torch.optim.AdamW:
    """AdamW as the ``adamw`` builder makes it, over ``params``."""
    return adamw(params, lr=1e-4)


def amortization_steps(resolved: dict[str, Any]) -> int:
    """Steps that cover one preconditioner refresh, so its cost is averaged in."""
    periods = [int(hp.get("precondition_frequency", 1)) for hp in resolved.get("hyperparameters", {}).values()]
    return max([1, *periods])


def measure_step_cost(model: torch.nn.Module, bundle: OptimizerBundle, repeats: int) -> dict[str, Any]:
    """Median seconds per step of ``bundle`` and of AdamW, over ``repeats`` interleaved windows.

    ``model``'s parameters must hold gradients (one forward and backward). ``bundle`` itself
    is stepped, with the state its run gave it (a fresh copy would time a preconditioner
    that has not started yet), so call this when the run is over: the trainer does, after
    its final checkpoint and evaluation. Copying the bundle instead would double the
    optimizer state in memory at the end of a long run. AdamW steps a copy of the
    parameters and gradients. Returns ``optimizer_step_s``, ``adamw_step_s``, ``repeats``
    and ``window_steps``; with ``repeats`` 0 nothing is timed and the times are None.
    """
    if repeats <= 0:
        return {"optimizer_step_s": None, "adamw_step_s": None, "repeats": 0}
    params = list(model.parameters())
    reference = copy.deepcopy(params)  # a deep copy of a parameter leaves its gradient behind
    for p, q in zip(params, reference):
        q.grad = None if p.grad is None else p.grad.detach().clone()
    device = params[0].device
    reference_optimizer = reference_adamw(reference)
    reference_optimizer.step()  # allocate AdamW's state outside the timed windows
    window = amortization_steps(bundle.resolved)
    own_s, adamw_s = [], []
    for _ in range(repeats):
        own_s.append(_seconds_per_step(bundle.step, window, device))
        adamw_s.append(_seconds_per_step(reference_optimizer.step, window, device))
    bundle.zero_grad(set_to_none=True)
    return {
        # median_high: an observed window, never the mean of two
        "optimizer_step_s": statistics.median_high(own_s),
        "adamw_step_s": statistics.median_high(adamw_s),
        "repeats": repeats,
        "window_steps": window,
    }


def step_cost_ratio(fwd_bwd_s: float | None, optimizer_step_s: float | None, adamw_step_s: float | None) -> float | None:
    """What one step of this optimizer costs relative to one AdamW step, forward and backward included."""
    if None in (fwd_bwd_s, optimizer_step_s, adamw_step_s):
        return None
    return (fwd_bwd_s + optimizer_step_s) / (fwd_bwd_s + adamw_step_s)


def _seconds_per_step(step: Callable[[], Any], steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: honest timings on CUDA need it; on CPU every op is already done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
