"""Spectral diagnostic: estimate the power-law exponent s of a spectrum and predict the
alpha shift a preconditioned optimizer brings at a fixed step budget.

The spectrum may be synthetic, the curvature of a random-feature draw, or measured
from a real model: pass a matrix of features/activations/per-example gradients
(rows = samples) to ``spectrum_from_samples``, or an eigenvalue array directly.

The prediction uses the deterministic equivalent of the random-feature model: the
aligned quadratic with eigenvalues k^-s (``QuadraticProblem``) trained with the same
steps, damping and step-size search, fitted over the same N grid. For ``diag`` the
prediction is the GD exponent: with rotation-invariant random features diag(H) is
nearly a multiple of the identity, so a diagonal preconditioner only rescales the
step (docs/proxy.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optlaw.errors import UserError
from optlaw.proxy.alpha_fit import fit_alpha_known_floor
from optlaw.proxy.optimizers import check_optimizers
from optlaw.proxy.quadratic import QuadraticProblem


def spectrum_from_samples(X) -> np.ndarray:
    """Eigenvalues (descending) of the covariance of the rows of X (samples x features)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or min(X.shape) < 2:
        raise UserError("spectrum_from_samples needs a 2-D array with at least 2 samples and 2 features")
    Xc = X - X.mean(axis=0, keepdims=True)
    # Singular values avoid forming the covariance (and work when features > samples).
    sv = np.linalg.svd(Xc, compute_uv=False)
    return np.sort(sv**2 / (X.shape[0] - 1))[::-1]


@dataclass(frozen=True)
class SpectrumFit:
    s: float
    rank_range: tuple[int, int]  # ranks (1-based, inclusive) used in the fit
    r_squared: float


def estimate_s(eigenvalues, rank_fraction: tuple[float, float] = (0.01, 0.5), min_rank: int = 2) -> SpectrumFit:
    """Fit log lambda_k = const - s log k over a middle band of ranks.

    The top few eigenvalues carry the scale and the tail is bent by finite sample
    size or rank, so by default ranks from 1% to 50% of the spectrum are used.
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    lam = lam[lam > lam[0] * 1e-12] if lam.size and lam[0] > 0 else lam[lam > 0]
    if lam.size < 4:
        raise UserError("estimate_s needs at least 4 positive eigenvalues")
    lo = max(min_rank, int(np.floor(rank_fraction[0] * lam.size)) + 1)
    hi = max(lo + 2, int(np.ceil(rank_fraction[1] * lam.size)))
    hi = min(hi, lam.size)
    k = np.arange(lo, hi + 1, dtype=np.float64)
    y = np.log(lam[lo - 1:hi])
    slope, intercept = np.polyfit(np.log(k), y, 1)
    resid = y - (intercept + slope * np.log(k))
    r2 = 1.0 - float(np.sum(resid**2) / max(np.sum((y - y.mean()) ** 2), 1e-300))
    return SpectrumFit(s=float(-slope), rank_range=(lo, hi), r_squared=r2)


def predict_alpha(s: float, optimizers, N_values, steps: int, damping: float, source_r: float,
                  input_dim: int, multipliers) -> dict[str, float]:
    """Predicted alpha (fixed ``steps``) per optimizer from the deterministic equivalent."""
    names = check_optimizers(optimizers)
    problem = QuadraticProblem(input_dim, s, source_r)
    out = {}
    for name in names:
        rule = "gd" if name == "diag" else name
        losses = [problem.parts(N, steps, rule, damping, multipliers).total for N in N_values]
        out[name] = fit_alpha_known_floor(N_values, losses, 0.0).alpha
    return out


def predict_alpha_shift(s: float, optimizers, **setting) -> dict[str, float]:
    """alpha(optimizer) - alpha(gd) predicted at spectral exponent s."""
    names = check_optimizers(optimizers)
    alphas = predict_alpha(s, sorted(set(names) | {"gd"}), **setting)
    return {name: alphas[name] - alphas["gd"] for name in names}


def interpolate_shift(table: dict, s: float, optimizer: str, exclude: float | None = None) -> float:
    """alpha shift at s read off a measured table ``{s: shift}`` (linear in s; the two
    nearest points extrapolate at the ends). ``exclude`` drops one s (leave-one-out check)."""
    pts = sorted((float(k), float(v)) for k, v in table.items() if exclude is None or float(k) != float(exclude))
    if len(pts) < 2:
        raise UserError(f"need at least two measured spectra to interpolate the {optimizer} shift")
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    if xs[0] <= s <= xs[-1]:
        return float(np.interp(s, xs, ys))
    i = [0, 1] if s < xs[0] else [-2, -1]
    slope = (ys[i[1]] - ys[i[0]]) / (xs[i[1]] - xs[i[0]])
    return float(ys[i[0]] + slope * (s - xs[i[0]]))
