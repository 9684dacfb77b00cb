"""Single-law fits of L(N) = L_irr + c N^-alpha and their bootstrap intervals over seeds.

The fitting stage (``optlaw.fit``) fits the two-axis Chinchilla laws L(N, D); the
random-feature study needs a one-axis exponent per (optimizer, s) at a fixed step
budget, with the irreducible part either known exactly (the proxy computes it) or
left free, so this small fitter lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from optlaw.errors import UserError


@dataclass(frozen=True)
class AlphaFit:
    alpha: float
    coefficient: float  # c in c N^-alpha
    irreducible: float  # L_irr: given, or fitted when ``free_floor``
    ci: tuple[float, float] | None = None  # bootstrap interval over seeds

    def predict(self, N) -> np.ndarray:
        return self.irreducible + self.coefficient * np.asarray(N, dtype=np.float64) ** (-self.alpha)


def _check(N, loss) -> tuple[np.ndarray, np.ndarray]:
    N = np.asarray(N, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if N.ndim != 1 or N.shape != loss.shape or len(N) < 2 or len(np.unique(N)) < 2:
        raise UserError("alpha fit needs at least two distinct model sizes N with one loss each")
    if not np.all(np.isfinite(loss)):
        raise UserError("alpha fit got a non-finite loss; drop diverged points first")
    return N, loss


def fit_alpha_known_floor(N, loss, irreducible: float = 0.0) -> AlphaFit:
    """Least squares of log(L - L_irr) on log N, with the irreducible loss known exactly."""
    N, loss = _check(N, loss)
    reducible = loss - irreducible
    if np.any(reducible <= 0):
        raise UserError("loss at or below the given irreducible part; the floor is wrong or the data too noisy")
    slope, intercept = np.polyfit(np.log(N), np.log(reducible), 1)
    return AlphaFit(alpha=float(-slope), coefficient=float(np.exp(intercept)), irreducible=float(irreducible))


def fit_alpha_free_floor(N, loss) -> AlphaFit:
    """L = L_inf + c N^-alpha with L_inf >= 0 fitted too (relative residuals, so every N counts)."""
    N, loss = _check(N, loss)
    if len(N) < 4:
        raise UserError("a free-floor alpha fit needs at least 4 model sizes (3 parameters)")
    start = fit_alpha_known_floor(N, loss, 0.0)
    log_n = np.log(N)

    def residual(params):
        log_floor, log_c, alpha = params
        return np.log(np.exp(log_floor) + np.exp(log_c - alpha * log_n)) - np.log(loss)

    best = None
    # The floor is poorly identified when the curve is still straight; start from several floors.
    for frac in (1e-3, 0.1, 0.5, 0.9):
        x0 = [np.log(frac * loss.min()), np.log(start.coefficient), max(start.alpha, 1e-3)]
        sol = least_squares(residual, x0, bounds=([-60, -60, 0.0], [np.log(loss.min()), 60, 10.0]))
        if best is None or sol.cost < best.cost:
            best = sol
    log_floor, log_c, alpha = best.x
    return AlphaFit(alpha=float(alpha), coefficient=float(np.exp(log_c)), irreducible=float(np.exp(log_floor)))


def bootstrap_alpha(N, losses_by_seed, irreducible: float | None = 0.0, n_boot: int = 1000,
                    level: float = 0.95, seed: int = 0) -> AlphaFit:
    """Fit the seed-mean curve; the interval resamples seeds with replacement and refits.

    ``irreducible=None`` fits the floor as a free parameter.
    """
    N = np.asarray(N, dtype=np.float64)
    losses = np.atleast_2d(np.asarray(losses_by_seed, dtype=np.float64))
    if losses.shape[1] != len(N):
        raise UserError(f"losses_by_seed has {losses.shape[1]} columns but there are {len(N)} model sizes")

    def fit(curve):
        return fit_alpha_free_floor(N, curve) if irreducible is None else fit_alpha_known_floor(N, curve, irreducible)

    point = fit(losses.mean(axis=0))
    n_seeds = losses.shape[0]
    if n_seeds < 2:
        return point
    rng = np.random.default_rng(seed)
    draws = np.array([fit(losses[rng.integers(0, n_seeds, n_seeds)].mean(axis=0)).alpha for _ in range(n_boot)])
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [tail, 1.0 - tail])
    return AlphaFit(alpha=point.alpha, coefficient=point.coefficient, irreducible=point.irreducible,
                    ci=(float(lo), float(hi)))
