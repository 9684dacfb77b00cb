"""Operation counts and measured step cost of the proxy optimizers.

``flops`` in a proxy record is an operation-count estimate of what an explicit run of
the optimizer would cost (the closed form itself is cheaper), so compute axes compare
like for like with the LLM records. ``step_cost_ratio`` is measured: explicit steps of
the optimizer are timed side by side with GD steps on the same problem. The curvature
of a quadratic is fixed, so the preconditioner is built once; that one-time cost is
returned separately (``preconditioner_setup_s``) and counted in ``flops``, not in the
per-step ratio, which then means what it means for an LLM run (time per step vs GD).
"""

from __future__ import annotations

import time

import numpy as np

from optlaw.proxy.dynamics import damping_abs, preconditioner_matrix
from optlaw.proxy.optimizers import PRECONDITIONER_POWER

# Symmetric eigendecomposition with vectors costs about 9 n^3 flops
# (Golub & Van Loan, Matrix Computations, 4th ed., section 8.3).
EIGH_FLOPS_PER_N3 = 9.0


def random_features_flops(optimizer: str, N: int, steps: int, input_dim: int, n_samples: int | None = None) -> float:
    """Forming H and c (2 v N^2 + 2 v N; with n samples: features 2 n v N, then 2 n N^2 + 2 n N),
    one preconditioner set-up, then per step a curvature mat-vec (2 N^2) and the
    preconditioner application (2 N^2 dense, N diagonal)."""
    if n_samples is None:
        setup = 2.0 * input_dim * N * N + 2.0 * input_dim * N
    else:
        setup = 2.0 * n_samples * input_dim * N + 2.0 * n_samples * N * N + 2.0 * n_samples * N
    if optimizer in ("kron", "sign", "ngd"):
        setup += EIGH_FLOPS_PER_N3 * N**3 + 2.0 * N**3  # eigh plus forming P = U f(mu) U^T
        per_step = 4.0 * N * N + 3.0 * N
    elif optimizer == "diag":
        per_step = 2.0 * N * N + 4.0 * N
    else:
        per_step = 2.0 * N * N + 3.0 * N
    return setup + steps * per_step


def quadratic_flops(optimizer: str, N: int, steps: int) -> float:
    """Diagonal curvature: a step is a few element-wise operations per coordinate."""
    per_step = 3.0 * N + (N if optimizer != "gd" else 0.0)
    setup = 3.0 * N if optimizer != "gd" else 0.0
    return setup + steps * per_step


def _best_time_s(fn, repeats: int, trials: int = 3) -> float:
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def dense_step_cost_ratio(H: np.ndarray, c: np.ndarray, optimizer: str, damping: float, steps: int,
                          repeats: int) -> tuple[float, float]:
    """(optimizer step time / GD step time, preconditioner set-up time in s), timed here."""
    if optimizer == "gd":
        return 1.0, 0.0
    theta = np.zeros_like(c)
    gd_step_s = _best_time_s(lambda: theta - 0.1 * (H @ theta - c), repeats)
    start = time.perf_counter()
    P = preconditioner_matrix(H, optimizer, damping)
    setup_s = time.perf_counter() - start
    if optimizer == "diag":
        p = np.diag(P).copy()
        opt_step_s = _best_time_s(lambda: theta - 0.1 * (p * (H @ theta - c)), repeats)
    else:
        opt_step_s = _best_time_s(lambda: theta - 0.1 * (P @ (H @ theta - c)), repeats)
    return opt_step_s / gd_step_s, setup_s


def diagonal_step_cost_ratio(mu: np.ndarray, theta_star: np.ndarray, optimizer: str, damping: float,
                             steps: int, repeats: int) -> tuple[float, float]:
    """Same measurement for a diagonal curvature (the quadratic proxy)."""
    if optimizer == "gd":
        return 1.0, 0.0
    theta = np.zeros_like(mu)
    gd_step_s = _best_time_s(lambda: theta - 0.1 * (mu * (theta - theta_star)), repeats)
    start = time.perf_counter()
    p = (mu + damping_abs(mu.max(), damping)) ** (-PRECONDITIONER_POWER[optimizer])
    setup_s = time.perf_counter() - start
    opt_step_s = _best_time_s(lambda: theta - 0.1 * (p * (mu * (theta - theta_star))), repeats)
    return opt_step_s / gd_step_s, setup_s
