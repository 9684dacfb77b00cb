"""Fitting stage: scaling laws per optimizer, the shared-exponent law, compute view, diagnostics.

Public API (statsmodels style: a fit is a function of data returning a frozen FitResult)::

    from optlaw.fit import load_runs, load_csv, fit_separate, fit_shared, fit_compute, run_study
    table = load_runs(["sweeps/main"])                      # or load_csv("runs.csv")
    shared = fit_shared(table, reference="adamw", bootstrap=1000)
    shared.params["rho_N", "muon"], shared.conf_int(0.9)["rho_N", "muon"], shared.predict(1e8, 2e9, "muon")
    study = run_study(table, law="compute")                 # every law, holdout check; study.document = fit.json
"""

from optlaw.fit.holdout import HoldoutCheck, holdout_check
from optlaw.fit.laws import (
    VARIANTS, cell_bootstrap_counts, check_budget, cost_per_ND, fit_compute, fit_separate, fit_shared,
)
from optlaw.fit.result import (
    ChinchillaLaw, FitResult, FitWarning, Goodness, ParamKey, ParamMap, Solve, WarningKind, compute_optimal,
)
from optlaw.fit.solver import HUBER_DELTA, OBJECTIVES
from optlaw.fit.study import LAWS, Study, run_study
from optlaw.fit.table import RunTable, load_csv, load_runs, load_wandb, mean_over_seeds

__all__ = [
    "ChinchillaLaw", "FitResult", "FitWarning", "Goodness", "HUBER_DELTA", "HoldoutCheck", "LAWS", "OBJECTIVES",
    "ParamKey", "ParamMap", "RunTable", "Solve", "Study", "VARIANTS", "WarningKind", "cell_bootstrap_counts",
    "check_budget", "compute_optimal", "cost_per_ND", "fit_compute", "fit_separate", "fit_shared", "holdout_check",
    "load_csv", "load_runs", "load_wandb", "mean_over_seeds", "run_study",
]
