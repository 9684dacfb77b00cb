"""Power-law random-feature regression with a population loss (arXiv 2605.29387 setup).

Inputs x in R^v with covariance diag(lambda), lambda_k = k^-s; a linear teacher
y = b.x + noise whose energy follows the source condition (see ``spectra``); the
student is f(x) = theta . (W^T x) with N Gaussian random features W in R^{v x N},
W_ij ~ N(0, 1/N). The population squared loss is a quadratic in theta with

    H = W^T diag(lambda) W,   c = W^T diag(lambda) b,   L(0) = 1/2 + noise/2,

so training is solved exactly by ``optlaw.proxy.dynamics``. Model sizes are nested:
the N-feature model uses the first N columns of one W per seed, so curves over N
differ by the model size only, not by a fresh draw (lower-variance alpha fits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optlaw.errors import UserError
from optlaw.proxy.dynamics import Modes, modes_from_curvature, tune_step_size
from optlaw.proxy.spectra import power_law_eigenvalues, target_coefficients


@dataclass(frozen=True)
class PointResult:
    """One (optimizer, N, steps) point; the loss parts sum to ``loss`` exactly."""

    optimizer: str
    N: int
    steps: int
    loss: float
    irreducible: float
    approximation: float
    optimization: float
    eta: float
    eta_multiplier: float
    searched: dict


class RandomFeatureProblem:
    """One seed's draw of random features for spectrum s; serves every N <= max_features."""

    def __init__(self, input_dim: int, s: float, source_r: float, max_features: int, seed: int,
                 noise_variance: float = 0.0):
        if max_features > input_dim:
            raise UserError(
                f"random_features: largest N ({max_features}) exceeds input_dim ({input_dim}); "
                "raise input_dim (4x the largest N keeps the tail of the spectrum)"
            )
        if noise_variance < 0:
            raise UserError(f"noise_variance={noise_variance} must be >= 0")
        self.s, self.source_r, self.seed = float(s), float(source_r), int(seed)
        self.input_dim, self.max_features = int(input_dim), int(max_features)
        lam = power_law_eigenvalues(input_dim, s)
        b = target_coefficients(input_dim, s, source_r)
        W = np.random.default_rng(seed).standard_normal((input_dim, max_features))
        lw = lam[:, None] * W
        self._gram = W.T @ lw  # unscaled H for the largest N; H_N = gram[:N, :N] / N
        self._cross = W.T @ (lam * b)
        self.irreducible = 0.5 * float(noise_variance)

    def curvature(self, N: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, c) of the N-feature model."""
        if not 1 <= N <= self.max_features:
            raise UserError(f"N={N} outside 1..{self.max_features} for this random-feature draw")
        return self._gram[:N, :N] / N, self._cross[:N] / np.sqrt(N)

    def solve(self, N: int, optimizers, steps: int, damping: float, multipliers) -> list[PointResult]:
        """Tune the step size of each optimizer and return its loss after ``steps`` steps."""
        H, c = self.curvature(N)
        mu, U = np.linalg.eigh(H)
        results = []
        for name in optimizers:
            modes: Modes = modes_from_curvature(H, c, name, damping, eig=(mu, U))
            # The best N-feature predictor leaves 1/2 (1 - c^T H^-1 c) of the unit energy.
            approximation = max(0.5 * (1.0 - float(modes.a.sum())), 0.0)
            choice = tune_step_size(modes, steps, multipliers)
            results.append(PointResult(
                optimizer=name, N=N, steps=steps,
                loss=self.irreducible + approximation + choice.excess,
                irreducible=self.irreducible, approximation=approximation, optimization=choice.excess,
                eta=choice.eta, eta_multiplier=choice.eta_multiplier, searched=choice.searched,
            ))
        return results


def feature_spectrum(problem: RandomFeatureProblem, N: int) -> np.ndarray:
    """Eigenvalues of the N-feature curvature H (descending): what a diagnostic would measure."""
    H, _ = problem.curvature(N)
    return np.sort(np.linalg.eigvalsh(H))[::-1]
