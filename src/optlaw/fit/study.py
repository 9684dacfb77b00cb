"""One complete fitting study of a table: the laws, diagnostics and the fit.json document.

``run_study`` is what ``optlaw fit`` does before writing files; other stages (proxy,
demo) can call it directly and read ``Study.document``, the fit.json content. That
document is the one serialisation of a study: the header, each fit's ``to_json()``, the
holdout check's and the table's, and every warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from optlaw.errors import UserError
from optlaw.fit.conclusions import conclusions, interval, num
from optlaw.fit.constancy import RhoConstancy, rho_constancy
from optlaw.fit.holdout import HoldoutCheck, holdout_check
from optlaw.fit.identify import THRESHOLDS
from optlaw.fit.laws import DEFAULT_BOOTSTRAP, _check_reference, fit_compute, fit_separate, fit_shared
from optlaw.fit.result import CI_LEVEL, FitResult, FitWarning, WarningKind, unique_warnings
from optlaw.fit.solver import HUBER_DELTA
from optlaw.fit.table import RunTable
from optlaw.jsonio import plain

LAWS = ("chinchilla", "shared", "compute")
FIT_SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Study:
    """Everything ``optlaw fit`` computes for one table (see ``run_study``)."""

    table: RunTable
    law: str                             # the headline law: chinchilla | shared | compute
    variant: str
    objective: str
    reference: str | None                # None when no shared law was fitted
    bootstrap: int
    separate: FitResult | None = None
    shared: FitResult | None = None      # the shared (or compute) fit
    holdout: HoldoutCheck | None = None
    constancy: RhoConstancy | None = None
    cross_check: dict | None = None
    notes: tuple[FitWarning, ...] = ()   # the study's own: a law that could not be fitted

    @property
    def warnings(self) -> tuple[FitWarning, ...]:
        """Every warning of the study, each once: the table's, the fits', the holdout check's."""
        fits = [f.warnings for f in (self.separate, self.shared) if f is not None]
        held = self.holdout.warnings if self.holdout is not None else ()
        crossed = ()
        if self.cross_check is not None and self.cross_check["hoffmann_better"]:
            crossed = (FitWarning(message="Hoffmann L-BFGS cross-check found a lower objective than variable "
                                          "projection: see cross_check in fit.json", kind=WarningKind.CROSS_CHECK),)
        return unique_warnings(self.table.warnings, *fits, self.notes, held, crossed)

    @cached_property
    def document(self) -> dict:
        """The fit.json content (built once)."""
        return self.to_json()

    def to_json(self) -> dict:
        t = self.table
        doc: dict = {
            "schema_version": FIT_SCHEMA_VERSION, "law": self.law, "variant": self.variant,
            "objective": self.objective, "huber_delta": HUBER_DELTA if self.objective == "huber_log" else None,
            "reference": self.reference, "n_basis": t.n_basis, "n_points": len(t), "n_cells": t.n_cells(),
            "source": t.source, "bootstrap_replicates": self.bootstrap, "ci_level": CI_LEVEL,
            "data_range": {"N": [float(t.N.min()), float(t.N.max())], "D": [float(t.D.min()), float(t.D.max())]},
            "identifiability_thresholds": THRESHOLDS,
        }
        fits = _merge([f.to_json() for f in (self.separate, self.shared) if f is not None])
        doc["shared"] = fits.get("shared")
        doc["optimizers"] = fits.get("optimizers", {})
        if "compute" in fits:
            doc["compute"] = fits["compute"]
        doc["separate"] = fits.get("separate", {})
        doc.update(self.holdout.to_json() if self.holdout is not None else
                   {"holdout": [], "holdout_error": {}, "holdout_spec": None, "holdout_identifiability": {}})
        doc["conditioning"] = fits.get("conditioning", [])
        doc["interval_widths"] = fits.get("interval_widths", [])
        doc["rho_constancy"] = self.constancy.to_json() if self.constancy is not None else None
        doc["residuals"] = {"shared": None, "separate": None} | fits.get("residuals", {})
        doc["seed_noise"] = t.seed_noise
        doc["tuning"] = t.tuning
        doc["excluded_runs"] = t.excluded
        doc["warnings"] = [w.message for w in self.warnings]
        if self.cross_check is not None:
            doc["cross_check"] = self.cross_check
        doc = plain(doc, finite_only=True)  # fit.json is strict JSON: NaN/inf -> null
        doc["conclusions"] = conclusions(doc)
        return doc

    def summary(self) -> str:
        return summarize(self.document)

    def __repr__(self) -> str:  # the table and the fits are long; the summary says what was found
        return (f"Study(law={self.law!r}, variant={self.variant!r}, reference={self.reference!r}, "
                f"n_points={len(self.table)}, source={self.table.source!r})")


def _merge(parts: list[dict]) -> dict:
    """fit.json sections of several fits: lists (conditioning rows) concatenate, dicts (residuals) join."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if key not in out:
                out[key] = value
            elif isinstance(value, list):
                out[key] = out[key] + value
            elif isinstance(value, dict) and not set(value) & set(out[key]):
                out[key] = out[key] | value
            else:
                raise ValueError(f"two fits both write fit.json's {key!r}")
    return out


def run_study(table: RunTable, *, law: str = "shared", reference: str = "adamw", variant: str = "full",
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
    notes: list[FitWarning] = []
    separate = shared = None
    try:
        separate = fit_separate(table, objective=objective, bootstrap=bootstrap, seed=seed)
    except UserError as exc:
        if law == "chinchilla":
            raise
        notes.append(FitWarning(message=f"separate laws not fitted: {exc}", kind=WarningKind.COVERAGE))
    options = dict(reference=reference, variant=variant, objective=objective, bootstrap=bootstrap, seed=seed)
    if law == "chinchilla" and reference not in table.optimizers:
        notes.append(FitWarning(message=f"shared law not fitted: reference {reference!r} not in the data",
                                kind=WarningKind.COVERAGE))
    elif law == "compute":
        shared = fit_compute(table, **options, cost=cost)
    else:
        shared = fit_shared(table, **options)
    constancy = None
    if shared is not None and len(shared.optimizers) > 1:
        constancy = rho_constancy(table, shared, bootstrap=bootstrap, seed=seed)
    held = None
    if holdout:
        held = holdout_check(table, holdout, reference=reference if shared is not None else table.optimizers[0],
                             objective=objective)
    checked = cross_check(table, shared, separate, objective, cross_check_starts) if cross_check_starts else None
    return Study(table=table, law=law, variant=variant, objective=objective,
                 reference=reference if shared is not None else None, bootstrap=bootstrap, separate=separate,
                 shared=shared, holdout=held, constancy=constancy, cross_check=checked, notes=tuple(notes))


def cross_check(table: RunTable, shared: FitResult | None, separate: FitResult | None, objective: str,
                n_starts: int) -> dict:
    """Hoffmann-style multi-start L-BFGS on the same problem as the headline fit."""
    from optlaw.fit import solver
    from optlaw.fit.laws import _problem, _shared_structure

    grid = solver.hoffmann_grid()
    starts = grid[np.linspace(0, len(grid) - 1, min(n_starts, len(grid))).round().astype(int)]
    if shared is not None:
        sub = table.subset(np.isin(table.optimizer, shared.optimizers))
        p = _problem(sub, _shared_structure(sub, list(shared.optimizers), shared.reference, shared.variant),
                     objective)
        ours = shared.solves[None].objective_value
        fit_name = f"shared/{shared.variant}"
    else:
        opt = separate.optimizers[0]
        sub = table.subset(table.optimizer == opt)
        n = len(sub)
        p = _problem(sub, solver.Structure(np.zeros(n, int), np.zeros(n, int), 1, 1), objective)
        ours = separate.solves[opt].objective_value
        fit_name = f"separate/{opt}"
    theirs = solver.hoffmann_lbfgs(p, starts)
    return {"fit": fit_name, "n_starts": len(starts), "variable_projection_objective": ours,
            "hoffmann_objective": theirs.objective_value, "hoffmann_alpha": theirs.alpha,
            "hoffmann_beta": theirs.beta, "hoffmann_E": float(theirs.coef[0]),
            "hoffmann_better": bool(theirs.objective_value < ours * (1 - 1e-6))}


def _verdict(entry: dict) -> str:
    v = entry.get("identifiability") or {}
    if not v:
        return ""
    return v["verdict"] if v["verdict"] == "identified" else f"{v['verdict'].upper()} ({'; '.join(v['reasons'])})"


def summarize(doc: dict) -> str:
    """The terminal summary: the conclusions in words first, then the numbers with intervals and verdicts.

    Every number may be null in fit.json (a degenerate fit, an interval a replicate sent to
    infinity) and is printed as such, never formatted blindly.
    """
    lines = [f"law={doc['law']} objective={doc['objective']} N={doc['n_basis']} reference={doc['reference']} "
             f"points={doc['n_points']} cells={doc['n_cells']} bootstrap={doc['bootstrap_replicates']}"]
    c = doc.get("conclusions") or {}
    if c.get("supported"):
        lines += ["Conclusions:"] + [f"  - {line}" for line in c["supported"]]
    if c.get("not_supported"):
        lines += ["Not supported by these data:"] + [f"  - {line}" for line in c["not_supported"]]
    if doc.get("shared"):
        s = doc["shared"]
        lines.append(f"shared ({doc['variant']}): {_verdict(s)}")
        lines.append("  " + " ".join(f"{k}={num(s[k], '.4g')} {interval(s['ci'].get(k))}"
                                      for k in ("E", "alpha", "beta")) +
                     f" cond={num(s['condition_number'])} ({s.get('conditioning_verdict')})")
        for opt, o in doc["optimizers"].items():
            lines.append(f"  {opt:<12} rho_N={num(o['rho_N'], '.3f')} {interval(o['rho_N_ci'])}  "
                         f"rho_D={num(o['rho_D'], '.3f')} {interval(o['rho_D_ci'])}"
                         + (f"  {_verdict(o)}" if o.get("identifiability") else ""))
    for opt, s in doc["separate"].items():
        lines.append(f"separate {opt:<12} alpha={num(s['alpha'], '.4g')} {interval(s['ci'].get('alpha'))} "
                     f"beta={num(s['beta'], '.4g')} {interval(s['ci'].get('beta'))} E={num(s['E'], '.4g')} "
                     f"cond={num(s['condition_number'])}  {_verdict(s)}")
    rc = doc.get("rho_constancy")
    if rc and rc.get("p_value") is not None:
        lines.append(f"rho constancy: {rc['test']}: p = {num(rc['p_value'], '.3g')}")
    for w in doc["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
