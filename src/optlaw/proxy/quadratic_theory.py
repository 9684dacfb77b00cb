"""Closed-form scaling predictions for the quadratic proxy (derivation: docs/proxy.md).

Spectrum lambda_k = k^-s, target energy e_k = C k^-(1+2rs) (C normalises the sum to 1),
preconditioner power q (gd 0, kron 1/4, sign and diag 1/2, ngd 1; diag == sign because
H is diagonal), step eta = m / nu_max with m the tuned multiplier.

- Approximation: 1/2 sum_{k>N} e_k ~ A N^-alpha with alpha = 2 r s, A = C / (4 r s).
- Optimisation, undamped: mode k decays as (1 - m k^-s(1-q))^(2D), so
  1/2 sum_k e_k exp(-2 m D k^-s(1-q)) ~ B D^-beta with beta = 2 r / (1 - q),
  B = C Gamma(beta) / (2 s (1-q)) (2 m)^-beta. ngd (q = 1) learns every mode in one step.
- Optimisation, damped (damping eps relative to lambda_1 = 1): modes with lambda_k << eps
  see P ~ eps^-q, i.e. GD with its step scaled by ((1+eps)/eps)^q, so beta = 2 r for every
  optimizer and the optimizers differ by rho_D = ((1+eps)/eps)^q only (rho_N = 1).
"""

from __future__ import annotations

import math

from optlaw.proxy.optimizers import PRECONDITIONER_POWER, check_optimizer


def predicted_exponents(optimizer: str, s: float, r: float, damping: float) -> dict:
    """alpha, beta (None = optimisation error gone after one step) and rho_D against gd."""
    q = PRECONDITIONER_POWER[check_optimizer(optimizer)]
    alpha = 2.0 * r * s
    if damping > 0:
        return {"alpha": alpha, "beta": 2.0 * r, "rho_N": 1.0, "rho_D": ((1.0 + damping) / damping) ** q}
    beta = None if q >= 1.0 else 2.0 * r / (1.0 - q)
    return {"alpha": alpha, "beta": beta, "rho_N": 1.0, "rho_D": None}


def predicted_coefficients(optimizer: str, s: float, r: float, feature_dim: int, multiplier: float) -> dict:
    """A and B of the undamped law (large-N, large-D asymptotics)."""
    q = PRECONDITIONER_POWER[check_optimizer(optimizer)]
    C = 1.0 / sum(k ** (-(1.0 + 2.0 * r * s)) for k in range(1, feature_dim + 1))
    A = C / (4.0 * r * s)
    if q >= 1.0:
        return {"A": A, "B": 0.0}
    beta = 2.0 * r / (1.0 - q)
    B = C * math.gamma(beta) / (2.0 * s * (1.0 - q)) * (2.0 * multiplier) ** (-beta)
    return {"A": A, "B": B}
