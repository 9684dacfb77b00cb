"""One complete fitting study of a table: the laws, diagnostics and the fit.json document.

``run_study`` is what ``optlaw fit`` does before writing files; other stages (proxy,
demo) can call it directly to get the same document.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from optlaw.errors import UserError
from optlaw.fit.holdout import holdout_check
from optlaw.fit.laws import DEFAULT_BOOTSTRAP, _check_reference, fit_compute, fit_separate, fit_shared
from optlaw.fit.result import FitResult, _plain
from optlaw.fit.solver import HUBER_DELTA
from optlaw.fit.table import FitWarning, RunTable

LAWS = ("chinchilla", "shared", "compute")
FIT_SCHEMA_VERSION = 1


@dataclass
class Study:
    table: RunTable
    document: dict                      # the fit.json content
    separate: FitResult | None = None
    shared: FitResult | None = None     # the shared (or compute) fit
    warnings: list[str] = field(default_factory=list)


def run_study(table: RunTable, law: str = "shared", reference: str = "adamw", variant: str = "full",
              objective: str = "huber_log", bootstrap: int = DEFAULT_BOOTSTRAP, holdout: str | None = "largest",
              cost: str = "flops", seed: int = 0, cross_check_starts: int = 0) -> Study:
    """Fit separate and shared laws (and the compute view for ``law='compute'``), run the
    holdout check and assemble fit.json. For ``law='chinchilla'`` a missing reference only
    skips the shared law; for the other laws it is an error. ``cross_check_starts`` > 0 also
    runs Hoffmann et al.'s multi-start L-BFGS (that many starts from their 4,500-point grid)
    on the headline law and records both objective values."""
    if law not in LAWS:
        raise UserError(f"law must be one of {', '.join(LAWS)}, got {law!r}")
    if law != "chinchilla":
        _check_reference(table, reference)  # before any compute
    notes = list(table.notes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        separate = shared = None
        try:
            separate = fit_separate(table, objective, bootstrap=bootstrap, seed=seed)
        except UserError as exc:
            if law == "chinchilla":
                raise
            notes.append(f"separate laws not fitted: {exc}")
        if law == "chinchilla" and reference not in table.optimizers:
            notes.append(f"shared law not fitted: reference {reference!r} not in the data")
        elif law == "compute":
            shared = fit_compute(table, reference, variant, objective, bootstrap=bootstrap, seed=seed, cost=cost)
        else:
            shared = fit_shared(table, reference, variant, objective, bootstrap=bootstrap, seed=seed)
        held = None
        if holdout:
            held = holdout_check(table, holdout, reference if shared is not None else table.optimizers[0],
                                 objective)
    for w in caught:
        if str(w.message) not in notes:
            notes.append(str(w.message))
    doc = _document(table, law, reference if shared is not None else None, variant, objective, bootstrap,
                    separate, shared, held, notes)
    if cross_check_starts:
        doc["cross_check"] = cross_check(table, shared, separate, objective, cross_check_starts)
        if doc["cross_check"]["hoffmann_better"]:
            doc["warnings"].append("Hoffmann L-BFGS cross-check found a lower objective than variable projection: "
                                   "see cross_check in fit.json")
    return Study(table, doc, separate, shared, notes)


def cross_check(table: RunTable, shared: FitResult | None, separate: FitResult | None, objective: str,
                n_starts: int) -> dict:
    """Hoffmann-style multi-start L-BFGS on the same problem as the headline fit."""
    from optlaw.fit import solver
    from optlaw.fit.laws import _problem, _shared_structure

    grid = solver.hoffmann_grid()
    starts = grid[np.linspace(0, len(grid) - 1, min(n_starts, len(grid))).round().astype(int)]
    if shared is not None:
        sub = table.subset(np.isin(table.optimizer, shared.optimizers))
        p = _problem(sub, _shared_structure(sub, shared.optimizers, shared.reference, shared.variant), objective)
        ours = shared.diagnostics["objective_value"]
        fit_name = f"shared/{shared.variant}"
    else:
        opt = separate.optimizers[0]
        sub = table.subset(table.optimizer == opt)
        n = len(sub)
        p = _problem(sub, solver.Structure(np.zeros(n, int), np.zeros(n, int), 1, 1), objective)
        ours = separate.diagnostics["per_optimizer"][opt]["objective_value"]
        fit_name = f"separate/{opt}"
    theirs = solver.hoffmann_lbfgs(p, starts)
    return {"fit": fit_name, "n_starts": len(starts), "variable_projection_objective": ours,
            "hoffmann_objective": theirs.objective_value, "hoffmann_alpha": theirs.alpha,
            "hoffmann_beta": theirs.beta, "hoffmann_E": float(theirs.coef[0]),
            "hoffmann_better": bool(theirs.objective_value < ours * (1 - 1e-6))}


def _ci(result: FitResult, name: str):
    value = result.ci.get(name)
    return list(value) if value is not None else None


def _document(table, law, reference, variant, objective, bootstrap, separate, shared, held, notes) -> dict:
    doc: dict = {
        "schema_version": FIT_SCHEMA_VERSION, "law": law, "variant": variant, "objective": objective,
        "huber_delta": HUBER_DELTA if objective == "huber_log" else None, "reference": reference,
        "n_basis": table.n_basis, "n_points": len(table), "n_cells": table.n_cells(), "source": table.source,
        "bootstrap_replicates": bootstrap, "ci_level": 0.95,
    }
    if shared is not None:
        d = shared.diagnostics
        doc["shared"] = {k: shared.params[k] for k in ("E", "A", "B", "alpha", "beta", "allocation_exponent")}
        doc["shared"].update({
            "ci": {k: _ci(shared, k) for k in ("E", "A", "B", "alpha", "beta", "allocation_exponent")},
            "objective_value": d["objective_value"], "condition_number": d["condition_number"],
            "max_abs_correlation": d["max_abs_correlation"], "on_bound": d["on_bound"],
        })
        doc["optimizers"] = {}
        for opt in shared.optimizers:
            good = d["goodness"][opt]
            entry = {"rho_N": shared.params[f"rho_N/{opt}"], "rho_D": shared.params[f"rho_D/{opt}"],
                     "rho_N_ci": _ci(shared, f"rho_N/{opt}"), "rho_D_ci": _ci(shared, f"rho_D/{opt}"),
                     "n_points": d["n_points_per_optimizer"][opt], "n_cells": d["n_cells_per_optimizer"][opt],
                     "rmse": good["rmse"], "mean_relative_error": good["mean_relative_error"]}
            if law == "compute":
                entry.update({"compute_multiplier": shared.params[f"compute_multiplier/{opt}"],
                              "compute_multiplier_ci": _ci(shared, f"compute_multiplier/{opt}"),
                              "cost_per_ND": shared.params[f"cost_per_ND/{opt}"]})
            doc["optimizers"][opt] = entry
        if law == "compute":
            doc["compute"] = {"cost_basis": d["cost_basis"], "allocation": d["allocation"]}
    else:
        doc["shared"], doc["optimizers"] = None, {}
    doc["separate"] = {}
    if separate is not None:
        for opt in separate.optimizers:
            per = separate.diagnostics["per_optimizer"][opt]
            good = separate.diagnostics["goodness"][opt]
            names = ("E", "A", "B", "alpha", "beta", "allocation_exponent")
            doc["separate"][opt] = {k: separate.params[f"{k}/{opt}"] for k in names}
            doc["separate"][opt].update({
                "ci": {k: _ci(separate, f"{k}/{opt}") for k in names},
                "condition_number": per["condition_number"], "max_abs_correlation": per["max_abs_correlation"],
                "objective_value": per["objective_value"], "on_bound": per["on_bound"],
                "n_points": per["n_points"], "rmse": good["rmse"], "mean_relative_error": good["mean_relative_error"]})
    doc["holdout"] = held["cells"] if held else []
    doc["holdout_error"] = held["error"] if held else {}
    doc["holdout_spec"] = held["held_out"] if held else None
    doc["conditioning"] = _conditioning_table(separate, shared)
    doc["residuals"] = {"shared": shared.diagnostics["goodness"] if shared else None,
                        "separate": separate.diagnostics["goodness"] if separate else None}
    doc["seed_noise"] = table.seed_noise
    doc["tuning"] = table.tuning
    doc["excluded_runs"] = table.excluded
    doc["warnings"] = notes + ([f"holdout: {n}" for n in held.get("notes", [])] if held else [])
    return _plain(doc)


def _conditioning_table(separate, shared) -> list[dict]:
    rows = []
    if separate is not None:
        for opt in separate.optimizers:
            per = separate.diagnostics["per_optimizer"][opt]
            rows.append({"fit": f"separate/{opt}", "n_params": len(per["parameters"]),
                         "condition_number": per["condition_number"],
                         "max_abs_correlation": per["max_abs_correlation"],
                         "parameters": per["parameters"], "correlation": per["correlation"]})
    if shared is not None:
        d = shared.diagnostics
        rows.append({"fit": f"shared/{shared.variant}", "n_params": len(d["parameters"]),
                     "condition_number": d["condition_number"], "max_abs_correlation": d["max_abs_correlation"],
                     "parameters": d["parameters"], "correlation": d["correlation"]})
    return rows


def _cond(value) -> str:
    # fit.json stores an infinite condition number (singular J^T J, e.g. a coefficient on its bound) as null.
    return "inf" if value is None else f"{value:.3g}"


def summarize(doc: dict) -> str:
    """A few lines for the terminal."""
    lines = [f"law={doc['law']} objective={doc['objective']} N={doc['n_basis']} reference={doc['reference']} "
             f"points={doc['n_points']} cells={doc['n_cells']}"]
    if doc.get("shared"):
        s = doc["shared"]
        lines.append(f"shared: E={s['E']:.4g} A={s['A']:.4g} B={s['B']:.4g} alpha={s['alpha']:.4g} "
                     f"beta={s['beta']:.4g} cond={_cond(s['condition_number'])}")
        for opt, o in doc["optimizers"].items():
            ci_n, ci_d = o["rho_N_ci"] or [np.nan, np.nan], o["rho_D_ci"] or [np.nan, np.nan]
            lines.append(f"  {opt:<12} rho_N={o['rho_N']:.3f} [{ci_n[0]:.3f}, {ci_n[1]:.3f}]  "
                         f"rho_D={o['rho_D']:.3f} [{ci_d[0]:.3f}, {ci_d[1]:.3f}]")
    for opt, s in doc["separate"].items():
        lines.append(f"separate {opt:<12} E={s['E']:.4g} A={s['A']:.4g} B={s['B']:.4g} alpha={s['alpha']:.4g} "
                     f"beta={s['beta']:.4g} cond={_cond(s['condition_number'])}")
    for w in doc["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
