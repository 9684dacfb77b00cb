"""Alpha tables of the random-feature study: per (optimizer, s), from the rows the study's tasks return.

Kept apart from the study (which computes rows) and the report (which writes them) so both
can use the tables and neither imports the other.
"""

from __future__ import annotations

import numpy as np

from optlaw.proxy.alpha_fit import fit_alpha_known_floor


def loss_matrix(rows: list[dict], variant: str, optimizer: str, s: float, N_values) -> tuple[np.ndarray, list]:
    """losses[seed index, N index] for one (variant, optimizer, s)."""
    sel = [r for r in rows if r["variant"] == variant and r["optimizer"] == optimizer and r["s"] == s]
    seeds = sorted({r["seed"] for r in sel})
    index = {(r["seed"], r["N"]): r["loss"] for r in sel}
    return np.array([[index[(seed, N)] for N in N_values] for seed in seeds]), seeds


def alpha_table(rows: list[dict], variant: str, optimizers, s_values, N_values, irreducible: float,
                n_boot: int, level: float, seed: int = 0) -> dict:
    """alpha and shift-over-GD per (optimizer, s): point fit on seed means, paired bootstrap over seeds.

    Resampling the same seeds for every optimizer keeps the common feature draw, so
    the shift interval reflects the paired comparison, not two independent ones.
    """
    rng = np.random.default_rng(seed)
    tail = (1.0 - level) / 2.0
    alpha: dict = {o: {} for o in optimizers}
    shift: dict = {o: {} for o in optimizers}
    for s in s_values:
        mats = {o: loss_matrix(rows, variant, o, s, N_values)[0] for o in optimizers}
        n_seeds = mats[optimizers[0]].shape[0]

        def fit(o, idx):
            return fit_alpha_known_floor(N_values, mats[o][idx].mean(axis=0), irreducible).alpha

        point = {o: fit(o, np.arange(n_seeds)) for o in optimizers}
        with_ci = n_seeds >= 2 and n_boot > 0
        if with_ci:
            draws = {o: np.empty(n_boot) for o in optimizers}
            for b in range(n_boot):
                idx = rng.integers(0, n_seeds, n_seeds)
                for o in optimizers:
                    draws[o][b] = fit(o, idx)
        for o in optimizers:
            entry = {"alpha": point[o], "ci": None}
            sh = {"shift": point[o] - point["gd"], "ci": None}
            if with_ci:
                entry["ci"] = [float(x) for x in np.quantile(draws[o], [tail, 1 - tail])]
                sh["ci"] = [float(x) for x in np.quantile(draws[o] - draws["gd"], [tail, 1 - tail])]
            alpha[o][s] = entry
            shift[o][s] = sh
    return {"alpha": alpha, "shift": shift}
