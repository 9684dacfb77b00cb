"""Fitting stage: scaling laws per optimizer, the shared-exponent law, compute view, diagnostics.

Public API (statsmodels style: a fit is a function of data returning a FitResult)::

    from optlaw.fit import load_runs, load_csv, fit_separate, fit_shared, fit_compute, holdout_check
    table = load_runs(["sweeps/main"])                      # or load_csv("runs.csv")
    shared = fit_shared(table, reference="adamw", bootstrap=1000)
    shared.params["rho_N/muon"], shared.ci["rho_N/muon"], shared.predict(1e8, 2e9, "muon")
"""

from optlaw.fit.laws import (
    VARIANTS, cell_bootstrap_counts, check_budget, compute_optimal, cost_per_ND, fit_compute, fit_separate,
    fit_shared,
)
from optlaw.fit.result import FitResult
from optlaw.fit.solver import HUBER_DELTA, OBJECTIVES
from optlaw.fit.table import FitWarning, RunTable, load_csv, load_runs, load_wandb, mean_over_seeds

__all__ = [
    "FitResult", "FitWarning", "HUBER_DELTA", "OBJECTIVES", "RunTable", "VARIANTS", "cell_bootstrap_counts",
    "check_budget", "compute_optimal", "cost_per_ND", "fit_compute", "fit_separate", "fit_shared", "load_csv",
    "load_runs", "load_wandb", "mean_over_seeds",
]
