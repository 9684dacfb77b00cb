"""Power-law spectra and targets shared by both proxy tasks.

Convention (capacity/source, as in the kernel-regression literature):
eigenvalues ``lambda_k = k^-s`` and target energy per eigendirection
``lambda_k * theta*_k^2 proportional to k^-(1 + 2 r s)``, so the best rank-N
approximation leaves a tail that decays as ``N^-(2 r s)``. The energy is
normalised to sum to 1, so the loss at initialisation is 1/2 (+ irreducible).
"""

from __future__ import annotations

import math

import numpy as np

from optlaw.errors import UserError


def check_spectrum_exponent(s: float, key: str = "s") -> float:
    """The spectral exponent as a float, or a one-line UserError."""
    try:
        value = float(s)
    except (TypeError, ValueError):
        raise UserError(f"{key}={s!r} is not a number; give the spectral exponent, e.g. {key}=1.0") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{key}={s!r} must be a positive finite spectral exponent (lambda_k = k^-s), e.g. {key}=1.0")
    return value


def check_source(r: float, s: float, key: str = "source_r") -> float:
    try:
        value = float(r)
    except (TypeError, ValueError):
        raise UserError(f"{key}={r!r} is not a number; give the source exponent, e.g. {key}=0.15") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{key}={r!r} must be positive (target tail decays as N^-(2 r s)), e.g. {key}=0.15")
    return value


def power_law_eigenvalues(dim: int, s: float) -> np.ndarray:
    """``lambda_k = k^-s`` for k = 1..dim."""
    k = np.arange(1, dim + 1, dtype=np.float64)
    return k ** (-check_spectrum_exponent(s))


def target_energy(dim: int, s: float, r: float) -> np.ndarray:
    """``lambda_k theta*_k^2``, normalised to sum to 1."""
    k = np.arange(1, dim + 1, dtype=np.float64)
    energy = k ** (-(1.0 + 2.0 * check_source(r, s) * check_spectrum_exponent(s)))
    return energy / energy.sum()


def target_coefficients(dim: int, s: float, r: float) -> np.ndarray:
    """Teacher weights ``theta*_k`` in the eigenbasis (positive; sign does not matter for the losses)."""
    return np.sqrt(target_energy(dim, s, r) / power_law_eigenvalues(dim, s))
