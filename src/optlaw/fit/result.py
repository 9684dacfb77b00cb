"""FitResult: what a fit returns (statsmodels style: params, ci, diagnostics, predict, summary)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FitResult:
    """One fitted law.

    ``params`` is a flat dict name -> value. Shared names are plain (``E``, ``alpha``,
    ``allocation_exponent``); per-optimizer names are ``name/optimizer`` (``rho_N/muon``,
    or for separate fits ``alpha/muon``). ``ci`` maps the same names to (low, high)
    bootstrap percentile intervals (empty without bootstrap).
    """

    law: str                      # chinchilla | shared | compute
    variant: str                  # separate | full | rho_D | rho_N
    objective: str                # huber_log | squared
    n_basis: str                  # total | non_embedding | as_given
    reference: str | None
    optimizers: list[str]
    params: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    # name -> (alpha, beta, E, A, B): the law each optimizer follows, used by predict()
    laws: dict[str, tuple[float, float, float, float, float]] = field(default_factory=dict)

    def predict(self, N, D, optimizer: str) -> np.ndarray:
        """Predicted loss at model size N and tokens D (arrays broadcast) for ``optimizer``."""
        if optimizer not in self.laws:
            raise KeyError(f"optimizer {optimizer!r} not in this fit; fitted: {', '.join(self.laws)}")
        alpha, beta, E, A, B = self.laws[optimizer]
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return E + A * N ** -alpha + B * D ** -beta

    def param(self, name: str, optimizer: str | None = None) -> float:
        return self.params[name if optimizer is None else f"{name}/{optimizer}"]

    def to_json(self) -> dict:
        """Plain-JSON form (numbers, lists, dicts)."""
        return _plain({
            "law": self.law, "variant": self.variant, "objective": self.objective, "n_basis": self.n_basis,
            "reference": self.reference, "optimizers": self.optimizers, "params": self.params,
            "ci": {k: list(v) for k, v in self.ci.items()}, "diagnostics": self.diagnostics,
            "laws": {k: dict(zip(("alpha", "beta", "E", "A", "B"), v)) for k, v in self.laws.items()},
        })

    def summary(self) -> str:
        """A short text table of parameters with intervals and the main diagnostics."""
        head = (f"law={self.law} variant={self.variant} objective={self.objective} N={self.n_basis} "
                f"reference={self.reference} n_points={self.diagnostics.get('n_points')}")
        lines = [head, f"{'parameter':<28} {'value':>12} {'ci_low':>12} {'ci_high':>12}"]
        for name, value in self.params.items():
            lo, hi = self.ci.get(name, (float("nan"), float("nan")))
            lines.append(f"{name:<28} {value:>12.5g} {lo:>12.5g} {hi:>12.5g}")
        for key in ("objective_value", "rmse", "condition_number"):
            if key in self.diagnostics:
                lines.append(f"{key}: {self.diagnostics[key]}")
        for flag in self.diagnostics.get("on_bound", []):
            lines.append(f"WARNING on bound: {flag}")
        for note in self.diagnostics.get("warnings", []):
            lines.append(f"WARNING: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if np.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(_plain(obj), indent=2)
