"""Closed-form training curves of preconditioned gradient descent on a quadratic.

Loss ``L(theta) = floor + 1/2 (theta - theta*)^T H (theta - theta*)`` trained from
theta = 0 with ``theta <- theta - eta P grad`` and a fixed SPD preconditioner P.
With phi = P^-1/2 theta the iteration is plain GD on S = P^1/2 H P^1/2, so in the
eigenbasis of S (eigenvalues nu_i) every mode decays independently:

    excess(t) = 1/2 sum_i a_i (1 - eta nu_i)^(2 t),   a_i = energy of mode i at t = 0.

One eigendecomposition therefore gives the loss for every step count and every
step size at once, which is what makes the step-size search and whole grids cheap.
``simulate_losses`` iterates the update explicitly; tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optlaw.proxy.optimizers import PRECONDITIONER_POWER, check_optimizer

# Modes with curvature below this fraction of the top one carry no target energy
# (the target lies in H's range); dropping them avoids dividing by round-off.
NULL_MODE_RTOL = 1e-13


@dataclass(frozen=True)
class Modes:
    """Effective curvatures ``nu`` and initial excess energies ``a`` (excess(0) = sum(a)/2)."""

    nu: np.ndarray
    a: np.ndarray

    def excess(self, steps: int | np.ndarray, eta: float | np.ndarray) -> np.ndarray:
        """1/2 sum_i a_i (1 - eta nu_i)^(2 steps); broadcasts over array ``steps`` or ``eta``."""
        steps_arr = np.asarray(steps, dtype=np.float64)[..., None]
        eta_arr = np.asarray(eta, dtype=np.float64)[..., None]
        decay = np.abs(1.0 - eta_arr * self.nu) ** (2.0 * steps_arr)
        return 0.5 * (decay * self.a).sum(axis=-1)


def damping_abs(top_eigenvalue: float, damping: float) -> float:
    """Damping is given relative to the top curvature so it means the same at every N."""
    return float(damping) * float(top_eigenvalue)


def spectral_modes(mu: np.ndarray, g: np.ndarray, optimizer: str, damping: float) -> Modes:
    """Modes of an optimizer whose P is a function of H, from H's eigenvalues ``mu`` and
    the linear term's coordinates ``g = U^T c`` in H's eigenbasis (theta*_i = g_i / mu_i)."""
    q = PRECONDITIONER_POWER[check_optimizer(optimizer)]
    keep = mu > NULL_MODE_RTOL * mu.max()
    mu, g = mu[keep], g[keep]
    eps = damping_abs(mu.max(), damping)
    nu = mu * (mu + eps) ** (-q)
    return Modes(nu=nu, a=g**2 / mu)


def modes_from_curvature(H: np.ndarray, c: np.ndarray, optimizer: str, damping: float,
                         eig: tuple[np.ndarray, np.ndarray] | None = None) -> Modes:
    """Modes for a dense curvature H and linear term c (L = 1/2 th^T H th - c^T th + const).

    ``eig`` = (mu, U) from ``np.linalg.eigh(H)`` may be passed to share one decomposition
    between the spectral optimizers.
    """
    check_optimizer(optimizer)
    if optimizer != "diag":
        mu, U = eig if eig is not None else np.linalg.eigh(H)
        return spectral_modes(mu, U.T @ c, optimizer, damping)
    p_sqrt = diag_preconditioner(H, damping) ** 0.5
    S = p_sqrt[:, None] * H * p_sqrt[None, :]
    nu, V = np.linalg.eigh(S)
    h = V.T @ (p_sqrt * c)
    keep = nu > NULL_MODE_RTOL * nu.max()
    return Modes(nu=nu[keep], a=h[keep] ** 2 / nu[keep])


def diag_preconditioner(H: np.ndarray, damping: float) -> np.ndarray:
    d = np.diag(H)
    return (d + damping_abs(d.max(), damping)) ** -0.5


def preconditioner_matrix(H: np.ndarray, optimizer: str, damping: float) -> np.ndarray:
    """P as a dense matrix (for explicit iteration and for timing a real step)."""
    check_optimizer(optimizer)
    if optimizer == "diag":
        return np.diag(diag_preconditioner(H, damping))
    q = PRECONDITIONER_POWER[optimizer]
    mu, U = np.linalg.eigh(H)
    mu = np.clip(mu, 0.0, None)
    eps = damping_abs(mu.max(), damping)
    with np.errstate(divide="ignore"):
        p = np.where(mu + eps > 0, (mu + eps) ** (-q), 0.0)
    return (U * p) @ U.T


def simulate_losses(H: np.ndarray, c: np.ndarray, P: np.ndarray, eta: float, steps: int,
                    constant: float) -> np.ndarray:
    """Explicitly iterate theta <- theta - eta P (H theta - c) from 0; losses at t = 0..steps.

    ``constant`` is the loss at theta = 0.
    """
    theta = np.zeros_like(c)
    losses = [constant]
    for _ in range(steps):
        theta = theta - eta * (P @ (H @ theta - c))
        losses.append(float(constant + 0.5 * theta @ H @ theta - c @ theta))
    return np.asarray(losses)


@dataclass(frozen=True)
class StepSizeChoice:
    eta: float
    eta_multiplier: float  # eta * top effective curvature; stable below 2
    excess: float
    searched: dict[float, float]  # multiplier -> final excess loss


def tune_step_size(modes: Modes, steps: int, multipliers) -> StepSizeChoice:
    """The built-in step-size search: eta = m / max(nu) for each m, keep the lowest final loss.

    Scaling by the top effective curvature makes one multiplier grid fit every optimizer
    (GD on a quadratic is stable exactly for m < 2).
    """
    mults = np.asarray(sorted(float(m) for m in multipliers), dtype=np.float64)
    etas = mults / modes.nu.max()
    finals = modes.excess(steps, etas)
    finals = np.where(np.isfinite(finals), finals, np.inf)
    best = int(np.argmin(finals))
    return StepSizeChoice(eta=float(etas[best]), eta_multiplier=float(mults[best]), excess=float(finals[best]),
                          searched={float(m): float(f) for m, f in zip(mults, finals)})
