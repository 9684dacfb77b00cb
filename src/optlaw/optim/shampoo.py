"""Shampoo with Adam grafting and blocked preconditioners, written for optlaw.

Why our own: torch-optimizer's Shampoo runs a full SVD every step and diverges
with less frequent root updates; pytorch_optimizer's variants were unstable on a
small LLaMA (issue 3). This follows the algorithm of Distributed Shampoo (Shi et
al. 2023, arXiv:2309.06497), single device:

  per 2-D parameter W (m x n), split into blocks of at most ``block_size`` per side
    m_t  = beta1 m + (1 - beta1) G                   first moment (filtered gradient)
    v_t  = beta2 v + (1 - beta2) G*G                 Adam's second moment (grafting)
    L_b  = beta2 L_b + (1 - beta2) G_b G_b^T         per block b
    R_b  = beta2 R_b + (1 - beta2) G_b^T G_b
    every ``precondition_frequency`` steps from ``start_preconditioning_step``:
        Linv_b = (L_b/(1-beta2^t) + eps I)^(-1/4),  Rinv_b likewise (symmetric eigh in root_dtype,
                 float32 by default with a float64 retry, as Distributed Shampoo)
    D    = bias-corrected m (Nesterov: G.lerp(m, beta1))
    A    = D / (sqrt(v / (1-beta2^t)) + grafting_eps)                 Adam's direction
    S_b  = Linv_b D_b Rinv_b * ||A_b|| / ||Linv_b D_b Rinv_b||        direction of Shampoo, norm of Adam
    (before the start step, S = A: plain Adam)
    W   <- W (1 - lr wd) - lr S                                       decoupled weight decay

Blocks: a side of length n is cut into ceil(n / block_size) equal blocks (padded
with zeros when it does not divide). Zero rows/columns of a padded gradient give
block-diagonal statistics, so padding leaves the real entries' update exact.

Under DDP the trainer all-reduces gradients before ``step``; every rank then
holds whole matrices and computes the same preconditioners (no sharding of the
root computation: each rank repeats it).
"""

from __future__ import annotations

import math

import torch

_ROOT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _block_layout(size: int, block_size: int) -> tuple[int, int]:
    n_blocks = max(1, math.ceil(size / block_size))
    return n_blocks, math.ceil(size / n_blocks)


def to_blocks(x: torch.Tensor, row_layout: tuple[int, int], col_layout: tuple[int, int]) -> torch.Tensor:
    """[m, n] -> [n_row_blocks, n_col_blocks, row_block, col_block] (zero-padded)."""
    (nr, bm), (nc, bn) = row_layout, col_layout
    m, n = x.shape
    if nr * bm != m or nc * bn != n:
        x = torch.nn.functional.pad(x, (0, nc * bn - n, 0, nr * bm - m))
    return x.reshape(nr, bm, nc, bn).permute(0, 2, 1, 3)


def from_blocks(blocks: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    nr, nc, bm, bn = blocks.shape
    return blocks.permute(0, 2, 1, 3).reshape(nr * bm, nc * bn)[: shape[0], : shape[1]]


def inverse_root(stat: torch.Tensor, epsilon: float, root: int, dtype: torch.dtype) -> torch.Tensor:
    """(stat + epsilon I)^(-1/root) for a batch of symmetric PSD matrices, via eigh.

    Negative eigenvalues (rounding of a PSD matrix) are clamped to 0 before epsilon.
    If eigh fails to converge in float32 it is retried in float64, as Distributed
    Shampoo does.
    """
    x = stat.to(dtype)
    x = (x + x.transpose(-1, -2)) / 2  # exact symmetry for eigh
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh(x)
    except torch.linalg.LinAlgError:
        if dtype == torch.float64:
            raise
        eigenvalues, eigenvectors = torch.linalg.eigh(x.double())
    scale = (eigenvalues.clamp(min=0) + epsilon).pow(-1.0 / root)
    return ((eigenvectors * scale.unsqueeze(-2)) @ eigenvectors.transpose(-1, -2)).to(stat.dtype)


class Shampoo(torch.optim.Optimizer):
    """Blocked Shampoo with Adam grafting for 2-D parameters (see module docstring)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.95, 0.95),
        epsilon: float = 1e-12,
        grafting_epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        block_size: int = 1024,
        precondition_frequency: int = 10,
        start_preconditioning_step: int = 10,
        nesterov: bool = False,
        root_dtype: str = "float32",
    ) -> None:
        if not (0.0 <= betas[0] < 1.0 and 0.0 < betas[1] < 1.0):
            raise ValueError(f"Shampoo betas must be in [0, 1) x (0, 1), got {betas}")
        if block_size < 1 or precondition_frequency < 1 or start_preconditioning_step < 1:
            raise ValueError("Shampoo block_size, precondition_frequency and start_preconditioning_step must be >= 1")
        if root_dtype not in _ROOT_DTYPES:
            raise ValueError(f"Shampoo root_dtype must be one of {sorted(_ROOT_DTYPES)}, got {root_dtype!r}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            epsilon=epsilon,
            grafting_epsilon=grafting_epsilon,
            weight_decay=weight_decay,
            block_size=block_size,
            precondition_frequency=precondition_frequency,
            start_preconditioning_step=start_preconditioning_step,
            nesterov=nesterov,
            root_dtype=root_dtype,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Shampoo here preconditions 2-D matrices only; got a parameter of shape {tuple(p.shape)}")

    def _init_state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            rows = _block_layout(p.shape[0], group["block_size"])
            cols = _block_layout(p.shape[1], group["block_size"])
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["left"] = torch.zeros(rows[0], cols[0], rows[1], rows[1], dtype=p.dtype, device=p.device)
            state["right"] = torch.zeros(rows[0], cols[0], cols[1], cols[1], dtype=p.dtype, device=p.device)
            # Stored in the parameter dtype: torch's load_state_dict casts float state to it anyway,
            # and a resumed run must see the very same roots.
            state["left_inv_root"] = torch.zeros_like(state["left"])
            state["right_inv_root"] = torch.zeros_like(state["right"])
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd = float(group["lr"]), float(group["weight_decay"])
            root_dtype = _ROOT_DTYPES[group["root_dtype"]]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self._init_state(p, group)
                state["step"] += 1
                t = int(state["step"].item())
                rows = _block_layout(p.shape[0], group["block_size"])
                cols = _block_layout(p.shape[1], group["block_size"])

                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                grad_blocks = to_blocks(grad, rows, cols)
                flat = grad_blocks.flatten(0, 1)  # [blocks, rows, cols] for in-place batched GEMMs
                state["left"].flatten(0, 1).baddbmm_(flat, flat.transpose(-1, -2), beta=beta2, alpha=1 - beta2)
                state["right"].flatten(0, 1).baddbmm_(flat.transpose(-1, -2), flat, beta=beta2, alpha=1 - beta2)

                bias1 = 1 - beta1**t
                bias2 = 1 - beta2**t
                first = grad.lerp(exp_avg, beta1) if group["nesterov"] else exp_avg
                denominator = exp_avg_sq.sqrt().div_(math.sqrt(bias2)).add_(group["grafting_epsilon"])
                adam = first.div(denominator).div_(bias1)

                start = group["start_preconditioning_step"]
                if t >= start:
                    if (t - start) % group["precondition_frequency"] == 0:
                        state["left_inv_root"].copy_(inverse_root(state["left"] / bias2, group["epsilon"], 4, root_dtype))
                        state["right_inv_root"].copy_(inverse_root(state["right"] / bias2, group["epsilon"], 4, root_dtype))
                    # `first` without 1/bias1: grafting fixes the norm, so the scale would cancel.
                    shampoo = state["left_inv_root"] @ to_blocks(first, rows, cols) @ state["right_inv_root"]
                    adam_norm = torch.linalg.vector_norm(to_blocks(adam, rows, cols), dim=(-2, -1), keepdim=True)
                    shampoo_norm = torch.linalg.vector_norm(shampoo, dim=(-2, -1), keepdim=True)
                    shampoo.mul_(adam_norm / shampoo_norm.clamp(min=torch.finfo(shampoo.dtype).tiny))
                    update = from_blocks(shampoo, p.shape)
                else:
                    update = adam
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr)
        return loss
