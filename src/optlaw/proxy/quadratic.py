"""The convex quadratic proxy (arXiv 2602.07712 setup), solved mode by mode.

Population loss over a feature space of dimension M (``feature_dim``, standing in
for infinity):

    L(theta) = E + 1/2 sum_k lambda_k (theta_k - theta*_k)^2,  lambda_k = k^-s,

with target energy lambda_k theta*_k^2 from the source condition (``spectra``).
A model of size N may only move the first N coordinates; D optimizer steps start
from theta = 0. The Hessian is diagonal in the parameter basis, so every update
rule of ``optimizers`` acts per coordinate and the loss splits exactly into

    irreducible   = E
    approximation = 1/2 sum_{k > N} lambda_k theta*_k^2            (what N cannot express)
    optimization  = 1/2 sum_{k <= N} lambda_k theta*_k^2 (1 - eta nu_k)^(2 D)   (not yet learned)

Because H is diagonal here, ``diag`` (diag(H)^-1/2) coincides with ``sign`` (H^-1/2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optlaw.errors import UserError
from optlaw.proxy.dynamics import Modes, spectral_modes, tune_step_size
from optlaw.proxy.spectra import power_law_eigenvalues, target_energy


@dataclass(frozen=True)
class QuadraticParts:
    irreducible: float
    approximation: float
    optimization: float
    eta: float
    eta_multiplier: float
    searched: dict

    @property
    def total(self) -> float:
        return self.irreducible + self.approximation + self.optimization


class QuadraticProblem:
    def __init__(self, feature_dim: int, s: float, source_r: float, irreducible_loss: float = 0.0):
        if irreducible_loss < 0:
            raise UserError(f"irreducible_loss={irreducible_loss} must be >= 0 (it is the loss floor E)")
        self.feature_dim = int(feature_dim)
        self.eigenvalues = power_law_eigenvalues(self.feature_dim, s)
        self.energy = target_energy(self.feature_dim, s, source_r)  # lambda_k theta*_k^2, sums to 1
        self.theta_star = np.sqrt(self.energy / self.eigenvalues)
        self.irreducible = float(irreducible_loss)
        # approximation(N) = 1/2 * (energy beyond N), from a reversed cumulative sum
        self._tail = np.concatenate([np.cumsum(self.energy[::-1])[::-1], [0.0]])

    def check_size(self, N: int) -> int:
        if not 1 <= int(N) <= self.feature_dim:
            raise UserError(f"N={N} must be between 1 and feature_dim={self.feature_dim}; raise feature_dim")
        return int(N)

    def approximation(self, N: int) -> float:
        return 0.5 * float(self._tail[self.check_size(N)])

    def modes(self, N: int, optimizer: str, damping: float) -> Modes:
        N = self.check_size(N)
        mu = self.eigenvalues[:N]
        # In H's own (coordinate) basis g_k = c_k = lambda_k theta*_k; diag(H) = H here.
        name = "sign" if optimizer == "diag" else optimizer
        return spectral_modes(mu, mu * self.theta_star[:N], name, damping)

    def parts(self, N: int, steps: int, optimizer: str, damping: float, multipliers) -> QuadraticParts:
        """Each part computed on its own; their sum is the loss (tests check it against L(theta_D))."""
        modes = self.modes(N, optimizer, damping)
        choice = tune_step_size(modes, steps, multipliers)
        return QuadraticParts(irreducible=self.irreducible, approximation=self.approximation(N),
                              optimization=choice.excess, eta=choice.eta, eta_multiplier=choice.eta_multiplier,
                              searched=choice.searched)

    def iterate(self, N: int, steps: int, optimizer: str, damping: float, eta: float) -> np.ndarray:
        """theta after ``steps`` explicit updates (coordinates beyond N stay 0)."""
        N = self.check_size(N)
        mu = self.eigenvalues[:N]
        from optlaw.proxy.optimizers import PRECONDITIONER_POWER, check_optimizer

        q = PRECONDITIONER_POWER[check_optimizer(optimizer)]
        p = (mu + float(damping) * mu.max()) ** (-q)
        theta = np.zeros(self.feature_dim)
        for _ in range(steps):
            grad = mu * (theta[:N] - self.theta_star[:N])
            theta[:N] -= eta * p * grad
        return theta

    def loss(self, theta: np.ndarray) -> float:
        """The total loss evaluated directly at a parameter vector."""
        return self.irreducible + 0.5 * float(np.sum(self.eigenvalues * (theta - self.theta_star) ** 2))
