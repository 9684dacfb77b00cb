"""Synthetic runs from a known shared-exponent law: ground truth for tests, benchmarks and demos."""

from __future__ import annotations

import numpy as np

from optlaw.fit.table import RunTable

TRUTH = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.30}
RHO = {"adamw": (1.0, 1.0), "muon": (0.85, 1.6), "lion": (1.1, 0.8)}  # (rho_N, rho_D)
SIZES = np.geomspace(1e7, 3e8, 5)
TOKENS_PER_PARAM = (5.0, 10.0, 20.0, 40.0, 80.0)


def true_loss(N, D, optimizer: str):
    rho_N, rho_D = RHO[optimizer]
    t = TRUTH
    return t["E"] + t["A"] / (rho_N * N) ** t["alpha"] + t["B"] / (rho_D * D) ** t["beta"]


def synthetic_table(seed: int = 0, noise: float = 0.004, seeds_per_cell: int = 1) -> RunTable:
    """Every optimizer on the 5 x 5 grid (75 cells); loss x exp(noise * standard normal)."""
    rng = np.random.default_rng(seed)
    rows = []
    for opt in RHO:
        for N in SIZES:
            for tpp in TOKENS_PER_PARAM:
                for s in range(seeds_per_cell):
                    D = tpp * N
                    rows.append((opt, N, D, true_loss(N, D, opt) * np.exp(noise * rng.standard_normal()), s))
    opt, N, D, loss, sd = zip(*rows)
    return RunTable.from_columns(opt, N, D, loss, seed=sd, flops=[6 * n * d for n, d in zip(N, D)])
