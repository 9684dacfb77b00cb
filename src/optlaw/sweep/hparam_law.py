"""Hyperparameter laws: each cell's optimum from its loss curve, and ``log h* = c + a log N + b log D`` across cells.

A tuning sweep's transfer scope fits this law per optimizer and tuned key from the sizes it
tuned and sets the larger sizes from its prediction; the fitting stage reports the same
laws (it imports this module: the sweep needs the law to plan, so it lives here).

- ``curve_minimum(values, losses)``: the cell's optimum, the vertex of the parabola in
  log(value) through the best value tried and its two neighbours (the minimum between
  grid points, not the grid point itself: a factor-2 grid alone would put every optimum on
  one of a few values). Falls back to the best value tried when that parabola does not
  exist (the best at an edge, a diverged neighbour) or does not open upwards.
- ``fit_law(cells, ...)``: ordinary least squares of log h* on (1, log N, log D), natural
  logs; a term the cells cannot identify (one size, one budget, or D proportional to N)
  is left out and its exponent reported as 0. Intervals: percentile bootstrap over cells
  (cells resampled with replacement; resamples that cannot identify the terms are
  skipped and counted), so they include the scatter of the cells about the law.

Least squares by numpy rather than a fitting library: three coefficients and a bootstrap
loop need nothing more, and the law must be importable without torch or scipy start-up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LAW_FORM = "log h* = c + a log N + b log D"
TERMS = ("c", "a", "b")


@dataclass(frozen=True)
class CurveMinimum:
    """A cell's optimum: the interpolated value, the parabola's loss there, and whether it was interpolated."""

    value: float
    loss: float
    interpolated: bool
    best_tried: float
    curvature: float | None = None   # interpolated: the parabola's loss per (natural log of value)^2

    def to_json(self) -> dict:
        return {"value": self.value, "loss": self.loss, "interpolated": self.interpolated, "best_tried": self.best_tried,
                "curvature": self.curvature}


def curve_minimum(values: Sequence[float], losses: Sequence[float]) -> CurveMinimum:
    """The minimum of a loss-against-value curve (values > 0; a diverged point's loss is inf)."""
    points = sorted((float(v), float(loss)) for v, loss in zip(values, losses))
    finite = [i for i, (_, loss) in enumerate(points) if math.isfinite(loss)]
    if not finite:
        raise ValueError("every point of the curve diverged: it has no minimum")
    i = min(finite, key=lambda k: points[k][1])
    best_value, best_loss = points[i]
    fallback = CurveMinimum(best_value, best_loss, False, best_value)
    if i == 0 or i == len(points) - 1:
        return fallback
    (x0, y0), (x1, y1), (x2, y2) = [(math.log(v), loss) for v, loss in points[i - 1:i + 2]]
    if not (math.isfinite(y0) and math.isfinite(y2)):
        return fallback
    # Parabola through three points: y = alpha (x - x1)^2 + beta (x - x1) + y1.
    d0, d2 = x0 - x1, x2 - x1
    s0, s2 = (y0 - y1) / d0, (y2 - y1) / d2
    alpha = (s2 - s0) / (d2 - d0)
    if not alpha > 0:
        return fallback
    beta = s0 - alpha * d0
    shift = -beta / (2 * alpha)
    x_min = min(max(x1 + shift, x0), x2)  # y1 <= y0, y2 keeps the vertex between the neighbours; clamp anyway
    loss = alpha * (x_min - x1) ** 2 + beta * (x_min - x1) + y1
    return CurveMinimum(math.exp(x_min), loss, True, best_value, alpha)


@dataclass(frozen=True)
class LawCell:
    """One tuned cell's optimum h* at its N (the record's N) and D (tokens trained)."""

    N: float
    D: float
    value: float
    cell: str = ""

    def to_json(self) -> dict:
        return {"cell": self.cell, "N": self.N, "D": self.D, "value": self.value}


@dataclass(frozen=True)
class HyperparameterLaw:
    """``log h* = c + a log N + b log D`` for one tuned key and one optimizer (``group``)."""

    key: str
    group: str
    terms: tuple[str, ...]                       # the terms fitted; an exponent left out is 0
    coef: dict[str, float]                       # c, a, b
    ci: dict[str, tuple[float, float]]           # percentile bootstrap interval per coefficient (nan when none)
    level: float
    cells: tuple[LawCell, ...]
    residual_rms: float                          # of log h* about the law
    bootstrap_requested: int
    samples: np.ndarray = field(repr=False)      # (bootstrap_used, 3): c, a, b per usable resample
    excluded: tuple[str, ...] = ()               # terms left out by tuning.law_terms (not for lack of cells)

    @property
    def bootstrap_used(self) -> int:
        return int(self.samples.shape[0])

    @property
    def residual_dof(self) -> int:
        """Cells beyond the terms fitted: with 0 or 1 the law interpolates and its intervals say little."""
        return len(self.cells) - len(self.terms)

    def predict(self, N: float, D: float) -> float:
        """h* at (N, D)."""
        return math.exp(self.coef["c"] + self.coef["a"] * math.log(N) + self.coef["b"] * math.log(D))

    def interval(self, N: float, D: float, level: float | None = None) -> tuple[float, float]:
        """Percentile bootstrap interval of h* at (N, D); (nan, nan) without usable resamples."""
        if not self.bootstrap_used:
            return math.nan, math.nan
        logs = self.samples @ np.array([1.0, math.log(N), math.log(D)])
        tail = 50 * (1 - (self.level if level is None else level))
        low, high = np.percentile(logs, [tail, 100 - tail])
        return math.exp(low), math.exp(high)

    def to_json(self) -> dict:
        return {
            "key": self.key, "group": self.group, "form": LAW_FORM, "terms": list(self.terms),
            "coef": dict(self.coef), "ci": {k: list(v) for k, v in self.ci.items()}, "level": self.level,
            "n_cells": len(self.cells), "cells": [c.to_json() for c in self.cells],
            "residual_rms_log": self.residual_rms, "residual_dof": self.residual_dof,
            "bootstrap": {"requested": self.bootstrap_requested, "used": self.bootstrap_used},
        }

    def summary(self) -> str:
        def term(name: str) -> str:
            low, high = self.ci[name]
            return f"{name} = {self.coef[name]:.3f} [{low:.3f}, {high:.3f}]" if name in self.terms else (
                f"{name} = 0 (left out: law_terms)" if name in self.excluded else f"{name} = 0 (not identified)")
        caveat = "; intervals unreliable: tune more cells" if self.residual_dof < 2 else ""
        return (f"{self.group} {self.key}: {LAW_FORM}; " + ", ".join(term(t) for t in TERMS)
                + f" ({len(self.cells)} cells, {self.residual_dof} residual dof, {self.bootstrap_used} bootstrap "
                f"resamples{caveat})")


def identifiable_terms(N: np.ndarray, D: np.ndarray, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    """The terms the cells' (N, D) design identifies: D drops first (one budget, or D in proportion to N).
    ``allowed`` (tuning.law_terms) limits the candidates, e.g. (c, b) when the parametrization carries N."""
    columns = {"c": np.ones(len(N)), "a": np.log(N), "b": np.log(D)}
    for terms in (TERMS, ("c", "a"), ("c", "b"), ("c",)):
        if allowed is not None and not set(terms) <= set(allowed):
            continue
        X = np.column_stack([columns[t] for t in terms])
        if len(N) >= len(terms) and np.linalg.matrix_rank(X) == len(terms):
            return terms
    return ()


def fit_law(cells: Sequence[LawCell], key: str, group: str, bootstrap: int = 1000, level: float = 0.95,
            seed: int = 0, allowed_terms: Sequence[str] | None = None) -> HyperparameterLaw:
    """Fit the law to the cells' optima; ValueError when there are no cells."""
    if not cells:
        raise ValueError(f"no tuned cells to fit the {key} law of {group}")
    N = np.array([c.N for c in cells], dtype=float)
    D = np.array([c.D for c in cells], dtype=float)
    y = np.log(np.array([c.value for c in cells], dtype=float))
    terms = identifiable_terms(N, D, allowed_terms)
    columns = {"c": np.ones(len(cells)), "a": np.log(N), "b": np.log(D)}
    X = np.column_stack([columns[t] for t in terms])
    estimate = _solve(X, y)
    coef = {t: 0.0 for t in TERMS} | dict(zip(terms, estimate))
    residual_rms = float(np.sqrt(np.mean((y - X @ estimate) ** 2)))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(cells), len(cells))
        if np.linalg.matrix_rank(X[idx]) < len(terms):
            continue  # the resample cannot identify every term (e.g. one size drawn n times)
        fitted = dict(zip(terms, _solve(X[idx], y[idx])))
        samples.append([fitted.get(t, 0.0) for t in TERMS])
    sample_array = np.array(samples, dtype=float).reshape(-1, len(TERMS))
    tail = 50 * (1 - level)
    ci = {}
    for j, name in enumerate(TERMS):
        if name in terms and len(sample_array):
            low, high = np.percentile(sample_array[:, j], [tail, 100 - tail])
            ci[name] = (float(low), float(high))
        else:
            ci[name] = (math.nan, math.nan) if name in terms else (0.0, 0.0)
    return HyperparameterLaw(key=key, group=group, terms=terms, coef={k: float(v) for k, v in coef.items()}, ci=ci,
                             level=level, cells=tuple(cells), residual_rms=residual_rms,
                             bootstrap_requested=bootstrap, samples=sample_array,
                             excluded=tuple(t for t in TERMS if allowed_terms is not None and t not in allowed_terms))


def _solve(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(X, y, rcond=None)[0]
