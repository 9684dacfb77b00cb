"""Is a fitted law identified by its data? A verdict with reasons for every fit.

A least-squares fit always returns numbers; whether they mean anything depends on the design
(which (N, D) cells were run) and on what the solve and the bootstrap show. Each check below
yields a finding of a severity, and a fit's verdict is its worst finding:

- ``not identified``: the data cannot separate the parameters (fewer cells than parameters;
  one N or one D value; one D per N, so the N and D terms are confounded; a term that vanished
  (A or B at zero) so its exponent means nothing; an exponent on its search bound or an interval
  reaching it; a singular J^T J). The numbers are still written, marked as such.
- ``weak``: identified in principle but poorly (a near-minimal design, two values of N or D, E at
  zero, a solve stopped at its iteration limit, an exponent interval wider than
  ``EXPONENT_CI_WEAK`` times the estimate, a rho whose interval spans more than a factor
  ``RHO_CI_WEAK``, a coefficient that sits at zero in many bootstrap refits).
- ``identified``: none of these.

The thresholds are stated in fit.json's ``identifiability_thresholds`` and in docs/fitting.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Verdict(StrEnum):
    IDENTIFIED = "identified"
    WEAK = "weak"
    NOT_IDENTIFIED = "not identified"


_RANK = {Verdict.IDENTIFIED: 0, Verdict.WEAK: 1, Verdict.NOT_IDENTIFIED: 2}

NEAR_MINIMAL_MARGIN = 3     # cells < parameters + this: near-minimal (few residual degrees of freedom)
EXPONENT_CI_WEAK = 1.0      # exponent's 95% interval width / estimate above this: weak
RHO_CI_WEAK = 4.0           # rho's 95% interval high / low above this: weak
ZERO_SHARE_WEAK = 0.25      # a coefficient at zero in more than this share of bootstrap refits: weak
CONDITION_ILL = 1e10        # condition number of J^T J above this: ill-conditioned (see ``conditioning_verdict``)

THRESHOLDS = {"near_minimal_margin_cells": NEAR_MINIMAL_MARGIN, "exponent_ci_width_over_value_weak": EXPONENT_CI_WEAK,
              "rho_ci_high_over_low_weak": RHO_CI_WEAK, "coefficient_zero_share_weak": ZERO_SHARE_WEAK,
              "condition_number_ill": CONDITION_ILL}


@dataclass(frozen=True)
class Finding:
    severity: Verdict
    reason: str


@dataclass(frozen=True)
class Identifiability:
    """A fit's verdict and every reason behind it (an identified fit has none)."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> "Identifiability":
        findings = list(findings)
        worst = max((f.severity for f in findings), key=_RANK.get, default=Verdict.IDENTIFIED)
        ordered = sorted(findings, key=lambda f: -_RANK[f.severity])
        return cls(worst, tuple(f"{f.severity}: {f.reason}" for f in ordered if f.severity != Verdict.IDENTIFIED))

    def to_json(self) -> dict:
        return {"verdict": str(self.verdict), "reasons": list(self.reasons)}

    def __str__(self) -> str:
        return str(self.verdict) + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def _say(what: str | None, text: str) -> str:
    return text if not what else f"{what}: {text}"


def design_findings(N: np.ndarray, D: np.ndarray, n_params: int, what: str | None = None,
                    groups: np.ndarray | None = None) -> list[Finding]:
    """What the (N, D) cells of a fit can identify of a law with ``n_params`` parameters.
    ``groups`` (e.g. the optimizer of each run) makes a cell (group, N, D)."""
    N, D = np.asarray(N, float).tolist(), np.asarray(D, float).tolist()
    cells = sorted(set(zip(N, D)))
    groups = [""] * len(N) if groups is None else list(groups)
    k = len(set(zip(groups, N, D)))
    out = []
    if k < n_params:
        out.append(Finding(Verdict.NOT_IDENTIFIED, _say(what, f"{k} cells for {n_params} parameters")))
    elif k < n_params + NEAR_MINIMAL_MARGIN:
        out.append(Finding(Verdict.WEAK, _say(what, f"{k} cells for {n_params} parameters (near-minimal)")))
    sizes = sorted({n for n, _ in cells})
    tokens = sorted({d for _, d in cells})
    for label, values, exponent in (("N", sizes, "alpha"), ("D", tokens, "beta")):
        if len(values) < 2:
            out.append(Finding(Verdict.NOT_IDENTIFIED, _say(what, f"one {label} value, so {exponent} is not identified")))
        elif len(values) < 3:
            out.append(Finding(Verdict.WEAK, _say(what, f"only 2 distinct {label} values")))
    if len(sizes) >= 2 and all(sum(1 for n, _ in cells if n == size) == 1 for size in sizes):
        out.append(Finding(Verdict.NOT_IDENTIFIED,
                           _say(what, "one D per N, so the N and D terms are confounded (run several D per N)")))
    return out


def solve_findings(on_bound: Iterable[str], converged: bool, condition_number: float,
                   what: str | None = None) -> list[Finding]:
    out = []
    for flag in on_bound:
        if "search bound" in flag:
            out.append(Finding(Verdict.NOT_IDENTIFIED, _say(what, flag)))
        elif flag.startswith("E=0"):
            out.append(Finding(Verdict.WEAK, _say(what, f"{flag} (the data show no loss floor)")))
        else:
            out.append(Finding(Verdict.NOT_IDENTIFIED, _say(what, f"{flag} (a vanished term's exponent means nothing)")))
    if not converged:
        out.append(Finding(Verdict.WEAK, _say(what, "the solve stopped at its iteration limit")))
    if not math.isfinite(condition_number):
        out.append(Finding(Verdict.NOT_IDENTIFIED, _say(what, "J^T J is singular")))
    return out


def exponent_interval_findings(ci: Mapping[str, tuple[float, float] | None], values: Mapping[str, float],
                               what: str | None = None) -> list[Finding]:
    """Exponent intervals (None end = unbounded: the bootstrap reached the search bound)."""
    out = []
    for name, interval in ci.items():
        if interval is None:
            continue
        lo, hi = interval
        value = values[name]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
            out.append(Finding(Verdict.NOT_IDENTIFIED, _say(what, f"{name}'s interval reaches its search bound "
                                                                  f"({_fmt(lo)}, {_fmt(hi)})")))
        elif value > 0 and (hi - lo) / value > EXPONENT_CI_WEAK:
            out.append(Finding(Verdict.WEAK, _say(what, f"{name}'s interval [{lo:.3g}, {hi:.3g}] is wider than "
                                                        f"{EXPONENT_CI_WEAK:g} x its value {value:.3g}")))
    return out


def rho_interval_findings(name: str, interval: tuple[float, float] | None, what: str | None = None) -> list[Finding]:
    if interval is None:
        return []
    lo, hi = interval
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
        return [Finding(Verdict.NOT_IDENTIFIED, _say(what, f"{name}'s interval is unbounded ({_fmt(lo)}, {_fmt(hi)})"))]
    if hi / lo > RHO_CI_WEAK:
        return [Finding(Verdict.WEAK, _say(what, f"{name}'s interval [{lo:.3g}, {hi:.3g}] spans more than a factor "
                                                 f"{RHO_CI_WEAK:g}"))]
    return []


def zero_share_findings(shares: Mapping[str, float], what: str | None = None) -> list[Finding]:
    """Coefficients that sit at zero in many bootstrap refits (the data cannot tell them from zero)."""
    return [Finding(Verdict.WEAK, _say(what, f"{name} = 0 in {share:.0%} of bootstrap refits"))
            for name, share in shares.items() if share > ZERO_SHARE_WEAK]


def conditioning_verdict(condition_number: float) -> str:
    """``well-conditioned``, ``ill-conditioned`` (above CONDITION_ILL) or ``singular``.

    The number depends on the parameterisation and the parameter count, so it compares a fit
    with itself under other data, not the separate laws with the shared one: the interval
    widths of the exponents (fit.json ``interval_widths``) do that.
    """
    if not math.isfinite(condition_number):
        return "singular"
    return "ill-conditioned" if condition_number > CONDITION_ILL else "well-conditioned"


def _fmt(x: float) -> str:
    return "unbounded" if not math.isfinite(x) else f"{x:.3g}"
