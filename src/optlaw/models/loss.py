"""Next-token cross-entropy from the last hidden states, without the full fp32 logits.

The plain way (``lm_head(h)`` then ``cross_entropy(logits.float())``) keeps tokens x vocab
logits in bf16 *and* an fp32 copy alive for the backward pass: at llama/1b, micro-batch 8
and 2048 tokens that is 16k x 50304 x 6 bytes ~ 5 GB, the largest activation of the model.

``chunked`` (own code; pure PyTorch, so it runs everywhere): the head's matmul, the softmax
and both gradients are done a chunk of rows at a time *inside the forward pass*, and only
the gradients (one hidden-sized and one weight-sized tensor) are kept for backward, which
then just scales them. Peak extra memory is one chunk's logits. This is the idea of
Liger-Kernel's fused linear cross-entropy (Hsu et al. 2024), written here without Triton
so CPU runs and tests use it too.

``liger``: Liger-Kernel's Triton kernel (optional dependency ``liger-kernel``), CUDA only.
``auto`` picks liger when it is importable on CUDA, else chunked. ``full`` is the plain way.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

LOSS_IMPLS = ("auto", "chunked", "liger", "full")


@functools.cache
def liger_available() -> bool:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # noqa: F401
    except Exception:  # ImportError, or Triton failing to initialise without a GPU
        return False
    return True


def resolve_loss_impl(impl: str, device: torch.device) -> str:
    """The implementation ``impl`` stands for on ``device`` (``auto`` made concrete)."""
    if impl not in LOSS_IMPLS:
        raise ValueError(f"loss implementation {impl!r} is unknown; choose one of {LOSS_IMPLS}")
    if impl == "auto":
        return "liger" if device.type == "cuda" and liger_available() else "chunked"
    if impl == "liger" and not (device.type == "cuda" and liger_available()):
        raise ValueError("perf.loss_impl=liger needs CUDA and the liger-kernel package; use auto or chunked")
    return impl


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    impl: str = "auto",
    chunk_rows: int = 2048,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` (the LM head) against ``targets``.

    ``hidden`` is (..., d), ``targets`` the matching (...) token ids, ``weight`` (vocab, d).
    ``reduction`` is ``mean`` or ``sum`` over all tokens.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r}; use mean or sum")
    h = hidden.reshape(-1, hidden.size(-1))
    t = targets.reshape(-1)
    impl = resolve_loss_impl(impl, h.device)
    if impl == "full":
        return F.cross_entropy(_upcast(F.linear(h, weight)), t, reduction=reduction)
    if impl == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        return LigerFusedLinearCrossEntropyLoss(reduction=reduction)(weight, h, t)
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _ChunkedLinearCrossEntropy.apply(h, weight, t, chunk_rows, reduction == "sum")
    return _chunked_loss_sum(h, weight, t, chunk_rows) / (1 if reduction == "sum" else t.numel())


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """Softmax statistics in fp32 at least (bf16 logits lose the small probabilities)."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def _chunked_loss_sum(h: torch.Tensor, weight: torch.Tensor, t: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.promote_types(h.dtype, torch.float32), device=h.device)
    for start in range(0, h.size(0), chunk_rows):
        logits = _upcast(F.linear(h[start:start + chunk_rows], weight))
        total += F.cross_entropy(logits, t[start:start + chunk_rows], reduction="sum")
    return total


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Loss and both gradients chunk by chunk in forward; backward only scales them."""

    @staticmethod
    def forward(ctx, h, weight, t, chunk_rows, is_sum):  # type: ignore[override]
        n = t.numel()
        scale = 1.0 if is_sum else 1.0 / n
        grad_h = torch.empty_like(h) if h.requires_grad else None
        grad_w = torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32)) if weight.requires_grad else None
        total = torch.zeros((), dtype=torch.promote_types(h.dtype, torch.float32), device=h.device)
        for start in range(0, h.size(0), chunk_rows):
            hc, tc = h[start:start + chunk_rows], t[start:start + chunk_rows]
            logits = _upcast(F.linear(hc, weight))        # under autocast the matmul runs in bf16
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, tc[:, None]).squeeze(1)).sum()
            # d(loss)/d(logits) = softmax - one_hot, built in place in the logits' buffer
            dlogits = logits.sub_(lse[:, None]).exp_()
            dlogits.scatter_add_(1, tc[:, None], torch.full_like(lse[:, None], -1.0))
            dlogits.mul_(scale)
            if grad_h is not None:
                grad_h[start:start + chunk_rows] = (dlogits.to(weight.dtype) @ weight).to(h.dtype)
            if grad_w is not None:
                grad_w += (dlogits.t().to(hc.dtype) @ hc).to(grad_w.dtype)
            del logits, dlogits
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None
