"""Muon with torch.optim.Muon's semantics: batched, with a measured Newton-Schulz dtype.

Why not torch.optim.Muon itself (issues 3 and 18):

- It hard-codes a bf16 Newton-Schulz iteration. On CPUs that emulate bf16 matmul that
  iteration measured ~17x slower than fp32 with the same loss curve; on CPUs with
  avx512_bf16/AMX it is 2-4x faster than fp32. So ``ns_dtype: auto`` is decided by a
  short measurement on the machine at hand (``choose_ns_dtype``), and the dtype a run
  uses is pinned in its param groups: checkpoints carry it and resume never switches.
- It steps one matrix at a time. On small models the step is then mostly per-op
  overhead, so matrices of one shape (each turned short side first, as the iteration
  wants) are stacked into one batched iteration, and momentum, weight decay and the
  update are foreach ops. pytorch_optimizer's Muon batches the same way; this is our
  own code, kept to torch's semantics. Beyond it: on CPU the stack and Newton-Schulz
  buffers are kept between steps (fresh ones cost page faults), the Nesterov update is
  rounded straight into its slot of the stack (no fp32 stack, no write into ``.grad``),
  and tall matrices are transposed within one dtype (torch's blocked copy).

Kept from torch.optim.Muon: the momentum buffer (``lerp``), Nesterov, decoupled weight
decay ``lr * weight_decay``, the LR shape rules (``_adjust_lr``: "original",
"match_rms_adamw"), per-matrix Frobenius normalisation with the ``eps`` floor, the
quintic coefficients. A matrix whose shape is unique goes through exactly torch's
2-D op sequence, so with ``ns_dtype=bfloat16`` such a step is bit-for-bit torch's.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from typing import Any

import torch
from torch.optim import Muon
from torch.optim._muon import _adjust_lr  # torch's own shape rules ("original", "match_rms_adamw")

from optlaw import machine

NS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PROBE_NAME = "muon-ns-dtype"
# The probe times the real iteration on the run's matrix shapes, trimmed to at most this many
# FLOPs (about 10 ms in fp32 on one core; 0.2 s where bf16 is emulated), so it stays well under a second.
PROBE_FLOP_BUDGET = 1.0e9
PROBE_SECONDS = 0.5  # stop repeating once both dtypes have been timed this long in total
# bf16 must beat fp32 by this much to be chosen: at a tie fp32 wins, being nearer the exact polar factor.
BF16_MARGIN = 0.95


def newton_schulz_orthogonalize(
    update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype
) -> torch.Tensor:
    """Quintic Newton-Schulz iteration towards U V^T of one matrix (Jordan et al. 2024, Muon); torch's op order."""
    a, b, c = coefficients
    x = update.to(dtype)
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the short side: the Gram matrix is then the smaller one
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    if transposed:
        x = x.T
    return x


def _short_side_first(shape: torch.Size) -> tuple[int, int]:
    return (min(shape[0], shape[1]), max(shape[0], shape[1]))


def _batches(shapes: list[torch.Size]) -> list[list[int]]:
    """Indices of ``shapes`` grouped by short-side-first shape (m x n with n x m), in first-seen order."""
    batches: dict[tuple[int, int], list[int]] = {}
    for index, shape in enumerate(shapes):
        batches.setdefault(_short_side_first(shape), []).append(index)
    return list(batches.values())


def _stack_buffers(count: int, short: int, long: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The iterate, its Gram matrix, the Gram polynomial and the next iterate of a stack of ``count`` matrices."""
    x = torch.empty((count, short, long), dtype=dtype, device=device)
    gram = torch.empty((count, short, short), dtype=dtype, device=device)
    return x, gram, torch.empty_like(gram), torch.empty_like(x)


def _iterate_stack(
    buffers: tuple[torch.Tensor, ...], coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """Newton-Schulz on the stack already in ``buffers[0]`` (short side first), each matrix normalised by its
    own norm; returns the buffer that holds the result (the iterate and the spare are swapped every step)."""
    x, gram, poly, nxt = buffers
    a, b, c = coefficients
    x.div_(x.norm(dim=(-2, -1), keepdim=True).clamp_(min=eps))
    for _ in range(steps):
        torch.bmm(x, x.mT, out=gram)
        torch.baddbmm(gram, gram, gram, beta=b, alpha=c, out=poly)
        torch.baddbmm(x, poly, x, beta=a, out=nxt)
        x, nxt = nxt, x
    return x


def orthogonalize_batched(
    updates: list[torch.Tensor], coefficients: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype
) -> list[torch.Tensor]:
    """``newton_schulz_orthogonalize`` of every matrix, same-shape matrices in one batched iteration.

    An m x n and an n x m matrix share a batch: the iteration runs on each one's short-side-first
    view (X^T's iterate is the transpose of X's). Each matrix is normalised by its own norm.
    Results come back in ``dtype``, in the order of ``updates``.
    """
    results: list[torch.Tensor | None] = [None] * len(updates)
    for indices in _batches([u.shape for u in updates]):
        if len(indices) == 1:
            results[indices[0]] = newton_schulz_orthogonalize(updates[indices[0]], coefficients, steps, eps, dtype)
            continue
        flipped = [updates[i].size(0) > updates[i].size(1) for i in indices]
        buffers = _stack_buffers(len(indices), *_short_side_first(updates[indices[0]].shape), dtype, updates[indices[0]].device)
        torch.stack([updates[i].T if flip else updates[i] for i, flip in zip(indices, flipped)], out=buffers[0])
        ortho = _iterate_stack(buffers, coefficients, steps, eps)
        for i, flip, matrix in zip(indices, flipped, ortho.unbind()):
            results[i] = matrix.T if flip else matrix
    return results  # type: ignore[return-value]


class _Stack:
    """One batch of a param group's same-shape matrices (m x n with n x m) and its buffers, which on CPU
    are kept from step to step (``OptlawMuon._plan``): a fresh large tensor's pages are faulted in and
    zeroed inside the op that first writes it."""

    def __init__(self, params: list[torch.Tensor], indices: list[int], dtype: torch.dtype) -> None:
        self.indices = indices
        short, long = _short_side_first(params[indices[0]].shape)
        device = params[indices[0]].device
        self.buffers = _stack_buffers(len(indices), short, long, dtype, device)
        self.flipped = [params[i].size(0) > params[i].size(1) for i in indices]
        self.rows = list(self.buffers[0].unbind())
        # A tall matrix's update is written upright here, then transposed into its row within one dtype:
        # torch copies a transpose in cache-sized blocks only between tensors of the same dtype, and a
        # converting strided write measured ~2.5x slower.
        self.upright = [torch.empty((long, short), dtype=dtype, device=device) if flip else None for flip in self.flipped]

    def load(self, grads: list[torch.Tensor], bufs: list[torch.Tensor], momentum: float, nesterov: bool) -> None:
        """Each matrix's update (torch's fp32 Nesterov lerp, or the buffer), rounded to the iteration's dtype."""
        for i, row, upright in zip(self.indices, self.rows, self.upright):
            target = row if upright is None else upright
            if nesterov:
                torch.lerp(grads[i], bufs[i], momentum, out=target)  # fp32 lerp, rounded once on the way out
            else:
                target.copy_(bufs[i])
            if upright is not None:
                row.copy_(upright.T)

    def orthogonalize(self, coefficients: tuple[float, float, float], steps: int, eps: float) -> list[tuple[int, torch.Tensor]]:
        """``(index, result)`` per matrix, each result in its matrix's orientation (a view of a kept buffer)."""
        ortho = _iterate_stack(self.buffers, coefficients, steps, eps)
        return [(i, matrix.T if flip else matrix) for i, flip, matrix in zip(self.indices, self.flipped, ortho.unbind())]


def _keeps_buffers(device: torch.device) -> bool:
    """Whether a step's Newton-Schulz buffers are kept for the next one (``OptlawMuon._plan``)."""
    return device.type == "cpu"


class _GroupPlan:
    """How one param group's step runs: its batches (with their kept buffers), the matrices alone in
    their shape, and the params of each shape (one adjusted LR each)."""

    def __init__(self, key: tuple | None, params: list[torch.Tensor], dtype: torch.dtype) -> None:
        self.key = key
        batches = _batches([p.shape for p in params])
        self.stacks = [_Stack(params, b, dtype) for b in batches if len(b) > 1]
        self.alone = [b[0] for b in batches if len(b) == 1]
        by_shape: dict[torch.Size, list[int]] = {}
        for index, param in enumerate(params):
            by_shape.setdefault(param.shape, []).append(index)
        self.by_shape = list(by_shape.items())


# --- choosing the dtype ----------------------------------------------------------------------------

def _iteration_flops(m: int, n: int, steps: int) -> float:
    # per step: X X^T (2 m^2 n), the Gram polynomial (2 m^3), poly @ X (2 m^2 n); m is the short side
    return steps * (4.0 * m * m * n + 2.0 * m**3)


def probe_workload(shapes: list[torch.Size], steps: int, budget: float = PROBE_FLOP_BUDGET) -> list[list[int]]:
    """``[count, short, long]`` per distinct matrix shape, trimmed to ``budget`` FLOPs per iteration.

    Counts are halved first, down to 2 (a batch of 2 behaves like a batch of 12 per matrix, and
    a batch is what the step runs), then both sides are scaled down together, keeping each
    shape's aspect ratio.
    """
    counts = Counter(_short_side_first(s) for s in shapes)
    work = [[count, m, n] for (m, n), count in sorted(counts.items())]

    def total() -> float:
        return sum(c * _iteration_flops(m, n, steps) for c, m, n in work)

    while total() > budget and any(c > 2 for c, _, _ in work):
        work = [[max(min(c, 2), (c + 1) // 2), m, n] for c, m, n in work]
    while total() > budget and all(m > 8 for _, m, _ in work):
        work = [[c, max(8, int(m * 0.75)), max(8, int(n * 0.75))] for c, m, n in work]
    return work


def _time_dtypes(work: list[list[int]], coefficients: tuple[float, float, float], steps: int, eps: float) -> dict[str, Any]:
    """Best-of-repeats seconds of the batched iteration over ``work`` in fp32 and in bf16, interleaved."""
    generator = torch.Generator().manual_seed(0)
    matrices = [torch.randn(m, n, generator=generator) for c, m, n in work for _ in range(c)]
    passes: dict[str, list[float]] = {name: [] for name in NS_DTYPES}
    started = time.perf_counter()
    for repeat in range(6):
        for name, dtype in NS_DTYPES.items():
            t0 = time.perf_counter()
            orthogonalize_batched(matrices, coefficients, steps, eps, dtype)
            passes[name].append(time.perf_counter() - t0)
        # The first pass pays kernel selection and allocation: it counts only while it is all there is.
        best = {name: min(times[1:] or times) for name, times in passes.items()}
        ratio = max(best.values()) / min(best.values())
        # A gap this wide is the hardware, not noise (emulated bf16: 17-30x); stop before the slow side costs more.
        if ratio >= (8 if repeat == 0 else 4) or (repeat >= 2 and time.perf_counter() - started > PROBE_SECONDS):
            break
    fastest = "bfloat16" if best["bfloat16"] < BF16_MARGIN * best["float32"] else "float32"
    return {"value": fastest, "times_ms": {name: round(t * 1e3, 3) for name, t in best.items()}, "passes": repeat + 1}


def choose_ns_dtype(
    requested: str, shapes: list[torch.Size], device: torch.device,
    coefficients: tuple[float, float, float], steps: int, eps: float,
) -> dict[str, Any]:
    """The Newton-Schulz dtype for ``requested`` (auto, float32, bfloat16) and how it was chosen.

    - given in the config: ``{"value": ..., "source": "config"}``;
    - auto on CUDA: bf16 where the GPU has native bf16 matmul (the reference setting of
      Jordan et al. and torch.optim.Muon; tensor cores make it the fast one on every such GPU),
      else fp32 (``source: rule``);
    - auto on CPU: a probe times the batched iteration on this run's shapes in both dtypes and
      takes the faster (bf16 only if >= 5% faster); cached per machine, torch build and threads
      (``optlaw.machine``). ``source: probe`` with the times.
    """
    if requested in NS_DTYPES:
        return {"value": requested, "source": "config"}
    if requested != "auto":
        raise ValueError(f"ns_dtype={requested!r}: use auto, float32 or bfloat16")
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return {"value": "bfloat16" if native else "float32", "source": "rule",
                "rule": "CUDA: bf16 where the GPU has native bf16 matmul, else fp32"}
    if device.type != "cpu":
        return {"value": "float32", "source": "rule", "rule": f"{device.type}: no probe; fp32"}
    work = probe_workload(shapes, steps)
    key = probe_key(work, coefficients, steps, device)
    found = machine.measured(PROBE_NAME, key, lambda: _time_dtypes(work, coefficients, steps, eps))
    return {"source": "probe", **found, "workload": work}


def probe_key(work: list[list[int]], coefficients: tuple[float, float, float], steps: int, device: torch.device) -> dict[str, Any]:
    """The probe's cache key: this machine and torch build (``optlaw.machine``) plus the workload timed."""
    return {"question": "muon.ns_dtype", "version": 1, **machine.machine_key(device), "workload": work,
            "ns_steps": steps, "coefficients": list(coefficients)}


def legacy_ns_dtype(device: torch.device) -> str:
    """What ``ns_dtype: auto`` meant before it was measured (optlaw < issue 18): bf16 on CUDA, fp32 elsewhere."""
    return "bfloat16" if device.type == "cuda" else "float32"


# --- the optimizer ---------------------------------------------------------------------------------

class OptlawMuon(Muon):
    """Muon (torch.optim.Muon semantics), batched, Newton-Schulz in a chosen or measured dtype.

    ``ns_dtype``: ``"auto"`` (see ``choose_ns_dtype``), ``"float32"``/``"bfloat16"`` or a torch dtype.
    Every param group carries the chosen ``ns_dtype`` and ``ns_dtype_choice`` (how it was
    chosen), so ``state_dict`` saves them and ``load_state_dict`` restores them: a resumed
    or branched run keeps the dtype it started with.
    """

    def __init__(self, params, *, ns_dtype: str | torch.dtype | None = "auto", **kwargs) -> None:
        super().__init__(params, **kwargs)
        if isinstance(ns_dtype, torch.dtype):
            ns_dtype = {v: k for k, v in NS_DTYPES.items()}.get(ns_dtype, str(ns_dtype))
        matrices = [p for group in self.param_groups for p in group["params"]]
        group0 = self.param_groups[0]
        choice = choose_ns_dtype(ns_dtype or "auto", [p.shape for p in matrices], matrices[0].device,
                                 tuple(group0["ns_coefficients"]), group0["ns_steps"], group0["eps"])
        self.adopt_choices({"ns_dtype": choice})

    def choices(self) -> dict[str, dict[str, Any]]:
        """How this optimizer's hardware-dependent values were chosen (the run record's ``choices``)."""
        return {"ns_dtype": dict(self.param_groups[0]["ns_dtype_choice"])}

    def resolved_hyperparameters(self) -> dict[str, Any]:
        """Values decided at build time that replace the config's (``auto`` -> the dtype in use)."""
        return {"ns_dtype": self.param_groups[0]["ns_dtype"]}

    def adopt_choices(self, choices: dict[str, dict[str, Any]]) -> None:
        """Use ``choices`` (from ``choices()`` of this or another rank's optimizer)."""
        choice = choices["ns_dtype"]
        for group in self.param_groups:
            group["ns_dtype"] = choice["value"]
            group["ns_dtype_choice"] = dict(choice)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        built = self.param_groups[0]["ns_dtype_choice"]
        super().load_state_dict(state_dict)  # restores the saved groups' keys, ns_dtype among them
        for group in self.param_groups:
            if "ns_dtype" not in group:  # saved before the dtype was pinned: keep what that run used
                value = built["value"] if built["source"] == "config" else legacy_ns_dtype(group["params"][0].device)
                group["ns_dtype"] = value
                group["ns_dtype_choice"] = {"value": value, "source": "checkpoint",
                                            "rule": "checkpoint written before the dtype was pinned: the rule of that time"}
        pinned = self.param_groups[0]["ns_dtype"]
        if pinned != built["value"]:
            warnings.warn(
                f"Muon's Newton-Schulz stays in {pinned}, the dtype this run started with (its checkpoint); "
                f"this machine would choose {built['value']} ({built['source']})", stacklevel=2)

    def _plan(self, group_index: int, params: list[torch.Tensor], dtype: torch.dtype) -> _GroupPlan:
        """The group's plan, kept while its params with gradients and the dtype stay the same.

        Only on CPU: there a fresh large buffer costs page faults at every step. On a GPU the caching
        allocator hands back freed blocks at no such cost, and buffers held between steps would take
        memory (about the hidden matrices' fp32 size) from the forward and backward pass.
        """
        if not _keeps_buffers(params[0].device):
            return _GroupPlan(None, params, dtype)
        key = (tuple(map(id, params)), dtype)
        plans = self.__dict__.setdefault("_plans", {})
        if group_index not in plans or plans[group_index].key != key:
            plans[group_index] = _GroupPlan(key, params, dtype)
        return plans[group_index]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group_index, group in enumerate(self.param_groups):
            params, grads, bufs = [], [], []
            self._init_group(group, params, grads, bufs)
            if not params:
                continue
            lr, momentum, weight_decay = float(group["lr"]), group["momentum"], group["weight_decay"]
            coefficients, steps, eps = tuple(group["ns_coefficients"]), group["ns_steps"], group["eps"]
            dtype = NS_DTYPES[group["ns_dtype"]]
            plan = self._plan(group_index, params, dtype)
            torch._foreach_lerp_(bufs, grads, 1 - momentum)
            orthos: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
            for i in plan.alone:  # torch's 2-D op sequence
                update = grads[i].lerp(bufs[i], momentum) if group["nesterov"] else bufs[i]
                orthos[i] = newton_schulz_orthogonalize(update, coefficients, steps, eps, dtype)
            for stack in plan.stacks:
                stack.load(grads, bufs, momentum, group["nesterov"])
                for i, ortho in stack.orthogonalize(coefficients, steps, eps):
                    orthos[i] = ortho
            if weight_decay != 0:  # multiplying by exactly 1 would change nothing
                # A 0-dim factor in the params' dtype: the same product as torch's Python float (cast to
                # it inside the kernel), without wrapping the scalar again for every tensor.
                torch._foreach_mul_(params, torch.tensor(1 - lr * weight_decay, dtype=params[0].dtype))
            # The LR shape rule is one scalar per shape. A bf16 update is added to the fp32 weight as
            # torch adds it (promoted inside add_), with no fp32 copy of it first.
            for shape, indices in plan.by_shape:
                torch._foreach_add_([params[i] for i in indices], [orthos[i] for i in indices],
                                    alpha=-_adjust_lr(lr, group["adjust_lr_fn"], shape))
        return loss
