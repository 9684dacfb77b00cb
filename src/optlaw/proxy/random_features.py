"""Power-law random-feature regression with a population loss (arXiv 2605.29387 setup).

Inputs x in R^v with covariance diag(lambda), lambda_k = k^-s; a linear teacher
y = b.x + noise whose energy follows the source condition (see ``spectra``); the
student is f(x) = theta . (W^T x) with N Gaussian random features W in R^{v x N},
W_ij ~ N(0, 1/N). The population squared loss is a quadratic in theta with

    H = W^T diag(lambda) W,   c = W^T diag(lambda) b,   L(0) = 1/2 + noise/2,

so training is solved exactly by ``optlaw.proxy.dynamics``. With ``n_samples`` set, the
model is trained on the empirical loss of n samples (curvature H_n = Phi^T Phi / n; the
preconditioners are built from H_n, as a real optimizer would) and evaluated on the
population loss; the "optimization" part then also holds the estimation error.
Model sizes are nested:
the N-feature model uses the first N columns of one W per seed, so curves over N
differ by the model size only, not by a fresh draw (lower-variance alpha fits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optlaw.errors import UserError
from optlaw.proxy.dynamics import (NULL_MODE_RTOL, Modes, damping_abs, diag_preconditioner, modes_from_curvature,
                                   tune_step_size)
from optlaw.proxy.optimizers import PRECONDITIONER_POWER, check_optimizer
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
                 noise_variance: float = 0.0, n_samples: int | None = None):
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
        if n_samples is not None and (isinstance(n_samples, bool) or int(n_samples) < 1):
            raise UserError(f"n_samples={n_samples!r} must be a positive integer, or null for the population loss")
        # Drawn feature by feature (rows of the transpose), so the first N columns are the same
        # whatever max_features is: a single point and a whole study see the same features.
        W = np.random.default_rng(seed).standard_normal((max_features, input_dim)).T
        lw = lam[:, None] * W
        self._gram = W.T @ lw  # unscaled H for the largest N; H_N = gram[:N, :N] / N
        self._cross = W.T @ (lam * b)
        self.irreducible = 0.5 * float(noise_variance)
        self.n_samples = None if n_samples is None else int(n_samples)
        if self.n_samples is not None:
            self._emp_gram, self._emp_cross = self._sample_statistics(lam, b, W, float(noise_variance))

    def _sample_statistics(self, lam, b, W, noise_variance, chunk_rows: int = 1024):
        """Phi^T Phi / n and Phi^T y / n for n Gaussian samples, accumulated in chunks to bound memory."""
        rng = np.random.default_rng([self.seed, 1])  # a stream of its own: samples do not depend on N
        gram = np.zeros((W.shape[1], W.shape[1]))
        cross = np.zeros(W.shape[1])
        left = self.n_samples
        while left > 0:
            rows = min(chunk_rows, left)
            X = rng.standard_normal((rows, lam.size)) * np.sqrt(lam)
            y = X @ b + np.sqrt(noise_variance) * rng.standard_normal(rows)
            phi = X @ W
            gram += phi.T @ phi
            cross += phi.T @ y
            left -= rows
        return gram / self.n_samples, cross / self.n_samples

    def empirical_curvature(self, N: int) -> tuple[np.ndarray, np.ndarray]:
        """(H_n, c_n) of the N-feature model on the n training samples."""
        if self.n_samples is None:
            raise UserError("empirical_curvature needs n_samples; this problem uses the population loss")
        self.curvature(N)  # bounds check
        return self._emp_gram[:N, :N] / N, self._emp_cross[:N] / np.sqrt(N)

    def curvature(self, N: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, c) of the N-feature model."""
        if not 1 <= N <= self.max_features:
            raise UserError(f"N={N} outside 1..{self.max_features} for this random-feature draw")
        return self._gram[:N, :N] / N, self._cross[:N] / np.sqrt(N)

    def solve(self, N: int, optimizers, steps: int, damping: float, multipliers) -> list[PointResult]:
        """Tune the step size of each optimizer and return its loss after ``steps`` steps."""
        return self.solve_many(N, [(name, steps, damping) for name in optimizers], multipliers)

    def solve_many(self, N: int, requests, multipliers) -> list[PointResult]:
        """One result per (optimizer, steps, damping) request, sharing the eigendecompositions."""
        H, c = self.curvature(N)
        eig = np.linalg.eigh(H)
        results = []
        if self.n_samples is not None:
            Hn, cn = self.empirical_curvature(N)
            emp_eig = np.linalg.eigh(Hn)
            approximation = max(0.5 * (1.0 - float(c @ np.linalg.solve(H, c))), 0.0)
        for name, steps, damping in requests:
            if self.n_samples is None:
                modes: Modes = modes_from_curvature(H, c, name, damping, eig=eig)
                # The best N-feature predictor leaves 1/2 (1 - c^T H^-1 c) of the unit energy.
                approximation = max(0.5 * (1.0 - float(modes.a.sum())), 0.0)
                choice = tune_step_size(modes, steps, multipliers)
                excess, eta, mult, searched = choice.excess, choice.eta, choice.eta_multiplier, choice.searched
            else:
                excess, eta, mult, searched = self._sample_trained(H, c, Hn, cn, emp_eig, name, steps, damping,
                                                                   multipliers, approximation)
            results.append(PointResult(
                optimizer=name, N=N, steps=steps, loss=self.irreducible + approximation + excess,
                irreducible=self.irreducible, approximation=approximation, optimization=excess,
                eta=eta, eta_multiplier=mult, searched=searched,
            ))
        return results

    def _sample_trained(self, H, c, Hn, cn, emp_eig, name, steps, damping, multipliers, approximation):
        """Train on the samples in closed form for every step size; pick the lowest population loss.

        theta_T = P^1/2 V diag((1 - (1 - eta nu)^T) / nu) V^T P^1/2 c_n in the eigenbasis of
        S_n = P^1/2 H_n P^1/2 (modes with nu = 0 never move from theta_0 = 0).
        """
        check_optimizer(name)
        if name == "diag":
            p_sqrt = diag_preconditioner(Hn, damping) ** 0.5
            nu, V = np.linalg.eigh(p_sqrt[:, None] * Hn * p_sqrt[None, :])
            h = V.T @ (p_sqrt * cn)
        else:
            mu, U = emp_eig
            q = PRECONDITIONER_POWER[name]
            nu = np.clip(mu, 0.0, None) * (np.clip(mu, 0.0, None) + damping_abs(mu.max(), damping)) ** (-q)
            p_sqrt = None
            V = U
            h = U.T @ cn * np.where(mu > 0, (np.clip(mu, 0.0, None) + damping_abs(mu.max(), damping)) ** (-q / 2), 0)
        keep = nu > NULL_MODE_RTOL * nu.max()
        nu, V, h = nu[keep], V[:, keep], h[keep]
        mults = np.asarray(sorted(float(m) for m in multipliers))
        etas = mults / nu.max()
        coef = (1.0 - (1.0 - etas[:, None] * nu) ** float(steps)) / nu * h  # [n_eta, modes], in phi-space
        phi = V @ coef.T
        if p_sqrt is not None:
            theta = p_sqrt[:, None] * phi
        else:  # spectral P: theta = P^1/2 phi with P^1/2 diagonal in U's basis
            mu, _ = emp_eig
            q = PRECONDITIONER_POWER[name]
            scale = (np.clip(mu, 0.0, None) + damping_abs(mu.max(), damping)) ** (-q / 2)
            theta = V @ (scale[keep][:, None] * (V.T @ phi))
        pop = 0.5 * np.sum(theta * (H @ theta), axis=0) - c @ theta + 0.5 + self.irreducible
        excess = pop - self.irreducible - approximation
        excess = np.where(np.isfinite(excess), excess, np.inf)
        best = int(np.argmin(excess))
        return (float(max(excess[best], 0.0)), float(etas[best]), float(mults[best]),
                {float(m): float(e) for m, e in zip(mults, excess)})


def feature_spectrum(problem: RandomFeatureProblem, N: int) -> np.ndarray:
    """Eigenvalues of the N-feature curvature H (descending): what a diagnostic would measure."""
    H, _ = problem.curvature(N)
    return np.sort(np.linalg.eigvalsh(H))[::-1]
