"""Extrapolation check: fit without some cells, predict them, compare laws on the error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optlaw.errors import UserError
from optlaw.fit.laws import VARIANTS, fit_separate, fit_shared
from optlaw.fit.result import FitWarning, WarningKind
from optlaw.fit.table import RunTable


@dataclass(frozen=True, kw_only=True)
class HoldoutCheck:
    """Each law fitted without the held-out cells, and its predictions of them.

    ``cells``: [{optimizer, N, D, actual, shared, separate, shared_<variant>...}] (None where
    a law could not be fitted); ``error``: {law: {n_cells, rmse_log, mean_relative_error}}.
    """

    spec: str
    n_held_out: int
    cells: list[dict]
    error: dict[str, dict]
    warnings: tuple[FitWarning, ...] = ()
    identifiability: dict[str, dict] | None = None   # law -> its fit's verdict on the kept cells

    def to_json(self) -> dict:
        """What fit.json holds for the check."""
        return {"holdout": self.cells, "holdout_error": self.error, "holdout_spec": self.spec,
                "holdout_identifiability": self.identifiability or {}}


def holdout_mask(table: RunTable, spec: str = "largest") -> np.ndarray:
    """Which rows to hold out. ``largest``: every run at the largest N in the data.
    Otherwise a comma-separated list of cells ``optimizer:N:D`` (N, D as numbers)."""
    if spec == "largest":
        return np.isclose(table.N, table.N.max(), rtol=1e-9)
    mask = np.zeros(len(table), dtype=bool)
    for item in spec.split(","):
        parts = item.strip().split(":")
        if len(parts) != 3:
            raise UserError(f"holdout cell {item!r} is not optimizer:N:D; e.g. --holdout adamw:1.2e9:2.4e10")
        opt, N, D = parts
        try:
            N, D = float(N), float(D)
        except ValueError:
            raise UserError(f"holdout cell {item!r}: N and D must be numbers") from None
        hit = (table.optimizer == opt) & np.isclose(table.N, N, rtol=1e-6) & np.isclose(table.D, D, rtol=1e-6)
        if not hit.any():
            raise UserError(f"holdout cell {item!r} matches no run; cells look like "
                            f"{table.optimizer[0]}:{table.N[0]:.6g}:{table.D[0]:.6g}")
        mask |= hit
    return mask


def holdout_check(table: RunTable, spec: str = "largest", *, reference: str = "adamw",
                  objective: str = "huber_log", variants: tuple[str, ...] = VARIANTS) -> HoldoutCheck:
    """Fit separate and shared laws (each variant) on the kept cells and predict the held-out ones.

    A law that cannot be fitted on the kept cells gets None predictions and a warning; the
    warnings of the fits on the kept cells come along, each prefixed ``holdout:``.
    """
    mask = holdout_mask(table, spec)
    if mask.all() and spec == "largest":
        # the default check on data with one N (a smoke or tuning sweep): nothing to extrapolate to
        return HoldoutCheck(spec=spec, n_held_out=0, cells=[], error={}, warnings=(FitWarning(
            message="holdout: every run is at the largest N, so the extrapolation check was skipped"),))
    if mask.all():
        raise UserError(f"holdout {spec!r} leaves no data to fit; hold out fewer cells, or use --holdout none")
    if not mask.any():
        return HoldoutCheck(spec=spec, n_held_out=0, cells=[], error={},
                            warnings=(FitWarning(message="holdout: nothing held out"),))
    train, test = table.subset(~mask), table.subset(mask)
    preds: dict[str, np.ndarray] = {}
    notes: list[FitWarning] = []
    verdicts: dict[str, dict] = {}

    def keep(fit, name):
        # the verdicts of the fits on the kept cells go into fit.json, not into the warnings
        notes.extend(w for w in fit.warnings if w.kind != WarningKind.IDENTIFIABILITY)
        verdicts[name] = {"separate" if k is None else str(k): v.to_json() for k, v in fit.identifiability.items()} \
            if name == "separate" else fit.verdict(None).to_json()

    try:
        sep = fit_separate(train, objective=objective)
        keep(sep, "separate")
        preds["separate"] = np.array([sep.predict(n, d, o) if o in sep.laws else np.nan
                                      for o, n, d in zip(test.optimizer, test.N, test.D)], dtype=float)
    except UserError as exc:
        notes.append(FitWarning(message=f"separate laws not fitted on the kept cells: {exc}",
                                kind=WarningKind.COVERAGE))
    for variant in variants:
        name = "shared" if variant == "full" else f"shared_{variant}"
        try:
            sh = fit_shared(train, reference=reference, variant=variant, objective=objective)
        except UserError as exc:
            notes.append(FitWarning(message=f"{name} not fitted on the kept cells: {exc}", kind=WarningKind.COVERAGE))
            continue
        keep(sh, name)
        preds[name] = np.array([sh.predict(n, d, o) if o in sh.laws else np.nan
                                for o, n, d in zip(test.optimizer, test.N, test.D)], dtype=float)
    cells = []
    for i in range(len(test)):
        row = {"optimizer": str(test.optimizer[i]), "N": float(test.N[i]), "D": float(test.D[i]),
               "actual": float(test.loss[i])}
        for name in ("shared", "separate") + tuple(k for k in preds if k not in ("shared", "separate")):
            value = preds.get(name, np.full(len(test), np.nan))[i]
            row[name] = float(value) if np.isfinite(value) else None
        cells.append(row)
    error = {}
    for name, pred in preds.items():
        ok = np.isfinite(pred)
        if ok.any():
            log_err = np.log(pred[ok]) - np.log(test.loss[ok])
            error[name] = {"n_cells": int(ok.sum()), "rmse_log": float(np.sqrt(np.mean(log_err ** 2))),
                           "mean_relative_error": float(np.mean(np.abs(pred[ok] - test.loss[ok]) / test.loss[ok]))}
    return HoldoutCheck(spec=spec, n_held_out=int(mask.sum()), cells=cells, error=error, identifiability=verdicts,
                        warnings=tuple(FitWarning(message=f"holdout: {w.message}", kind=w.kind,
                                                  optimizer=w.optimizer) for w in notes))
