"""What a fit returns: ``FitResult`` and the typed pieces it is made of.

statsmodels style: a fit is a function of data returning one frozen result; the result
never refits itself. Parameters are keyed by (name, optimizer), optimizer None for a
parameter every optimizer shares (E, alpha, ... of the shared law), so no name is ever
parsed out of a string. Bootstrap samples are kept, so intervals come at any level
(``conf_int``). ``to_json`` gives exactly what fit.json holds for the fit: the study's
fit.json is assembled from these pieces and nothing else writes one.

Warnings travel one way: a ``FitWarning`` record in the ``warnings`` of the table, the
result or the study (never Python's ``warnings.warn``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Generic, NamedTuple, TypeVar

import numpy as np

from optlaw.fit.identify import CONDITION_ILL, Identifiability, conditioning_verdict
from optlaw.jsonio import plain

CI_LEVEL = 0.95
EXPONENTS = ("alpha", "beta")
# An interval end within this share of an exponent's search bound: the bootstrap hit the bound.
SEARCH_BOUND_TOL = 1e-3
# Under no compute law the cost of a run is the usual C = 6 N D (Kaplan et al. 2020).
DEFAULT_COST_PER_ND = 6.0


# ----------------------------------------------------------------------------- warnings

class WarningKind(StrEnum):
    """What a warning is about (the report and tests can group or select by it)."""

    DATA = "data"                    # input rows dropped, runs excluded, tuning at the edge of a sweep
    COVERAGE = "coverage"            # an optimizer or a law left out for too few cells
    CONVERGENCE = "convergence"      # a solve stopped at its iteration limit
    EXTRAPOLATION = "extrapolation"  # an allocation or budget outside the data's range
    CROSS_CHECK = "cross_check"      # Hoffmann's L-BFGS found a lower objective
    IDENTIFIABILITY = "identifiability"  # a fit (or an optimizer's rho) is weak or not identified


@dataclass(frozen=True, kw_only=True)
class FitWarning:
    """Something about the data or the fit a reader should know (listed in fit.json and the report)."""

    message: str
    kind: WarningKind = WarningKind.DATA
    optimizer: str | None = None

    def __str__(self) -> str:
        return self.message


def unique_warnings(*groups) -> tuple[FitWarning, ...]:
    """The warnings of several sources in order, each message once."""
    seen: set[str] = set()
    out = []
    for group in groups:
        for w in group:
            if w.message not in seen:
                seen.add(w.message)
                out.append(w)
    return tuple(out)


# ----------------------------------------------------------------------------- parameters

class ParamKey(NamedTuple):
    """A parameter's name and the optimizer it belongs to (None: shared by every optimizer)."""

    name: str
    optimizer: str | None = None

    def __str__(self) -> str:  # a label for text, tables and plots; never parsed back
        return self.name if self.optimizer is None else f"{self.name}/{self.optimizer}"


V = TypeVar("V")


def _param_key(key) -> ParamKey:
    if isinstance(key, str):
        return ParamKey(key)
    if isinstance(key, tuple) and len(key) == 2:
        return ParamKey(*key)
    raise TypeError(f"a parameter key is (name, optimizer) or a shared parameter's name, got {key!r}")


class ParamMap(Mapping[ParamKey, V], Generic[V]):
    """Read-only mapping (name, optimizer) -> value; ``m["alpha"]`` is ``m["alpha", None]``.

    Own class, not ``types.MappingProxyType``: keys are normalised to ``ParamKey``, a
    missing key names the parameters that exist, and results holding it still pickle.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping | None = None):
        self._items = {_param_key(k): v for k, v in (items or {}).items()}

    def __getitem__(self, key) -> V:
        k = _param_key(key)
        try:
            return self._items[k]
        except KeyError:
            where = "shared" if k.optimizer is None else f"of optimizer {k.optimizer!r}"
            raise KeyError(f"no parameter {k.name!r} {where}; keys are (name, optimizer), e.g. "
                           f"params['rho_N', 'muon'] or params['alpha']; present: "
                           f"{', '.join(map(str, self._items)) or 'none'}") from None

    def __iter__(self) -> Iterator[ParamKey]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ParamMap({{{', '.join(f'{k}: {v!r}' for k, v in self._items.items())}}})"

    def of(self, optimizer: str | None) -> dict[str, V]:
        """name -> value of one optimizer's parameters (None: the shared ones)."""
        return {k.name: v for k, v in self._items.items() if k.optimizer == optimizer}


def percentile_intervals(samples: Mapping, level: float = CI_LEVEL) -> dict:
    """Percentile intervals (low, high) of each key's bootstrap values; keys with no value are left out."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {}
    for name, values in samples.items():
        values = np.asarray(values)
        values = values[~np.isnan(values)]
        if not values.size:
            continue
        if np.isfinite(values).all():
            lo, hi = np.percentile(values, q)
        else:
            # A replicate can put a coefficient at zero, making a derived number infinite
            # (e.g. N* with B = 0). Dropping it would narrow the interval; keep it, and take
            # order statistics, since interpolating next to an infinity is undefined.
            lo, hi = np.percentile(values, q[0], method="lower"), np.percentile(values, q[1], method="higher")
        out[name] = (float(lo), float(hi))
    return out


# ----------------------------------------------------------------------------- the law of one optimizer

def compute_optimal(alpha, beta, E, A, B, k, C):
    """N*(C), D*(C), L*(C) for L = E + A N^-alpha + B D^-beta under cost C = k N D."""
    C = np.asarray(C, dtype=float)
    A, B = np.asarray(A, dtype=float), np.asarray(B, dtype=float)   # numpy division: 0/0 is nan, not an error
    # A or B at zero (a degenerate fit) has no finite optimum: N* or D* comes out infinite.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        N_opt = g * (C / k) ** (beta / (alpha + beta))
        D_opt = C / (k * N_opt)
        return N_opt, D_opt, E + A * N_opt ** -alpha + B * D_opt ** -beta


class ChinchillaLaw(NamedTuple):
    """L(N, D) = E + A / N^alpha + B / D^beta: the law one optimizer follows.

    Under the shared law A and B are the optimizer's own A_o = A rho_N^-alpha, B_o = B rho_D^-beta.
    """

    alpha: float
    beta: float
    E: float
    A: float
    B: float

    def loss(self, N, D) -> np.ndarray:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A * N ** -self.alpha + self.B * D ** -self.beta

    def compute_optimal(self, cost_per_ND: float, C):
        """N*(C), D*(C), L*(C) under cost C = cost_per_ND * N * D."""
        return compute_optimal(self.alpha, self.beta, self.E, self.A, self.B, cost_per_ND, C)


# ----------------------------------------------------------------------------- diagnostics

@dataclass(frozen=True, kw_only=True)
class Solve:
    """How one least-squares solve ended, and how well the data pin its parameters down.

    ``converged``/``message`` say whether the solver finished (scipy's OptimizeResult style);
    ``on_bound`` lists parameters at a constraint, which a finished solve can also have.
    Conditioning is of J^T J, J the Jacobian of the fitted residual in Hoffmann's parameters
    (log E, log A, log B, alpha, beta); ``parameters`` labels its rows (A/adamw: that optimizer's A_o).
    """

    optimizer: str | None            # None: the joint solve over every optimizer (shared law)
    objective_value: float
    converged: bool
    message: str
    on_bound: tuple[str, ...]
    n_points: int
    n_cells: int
    condition_number: float
    max_abs_correlation: float
    parameters: tuple[str, ...]
    correlation: tuple[tuple[float, ...], ...]

    def conditioning_row(self, fit: str) -> dict:
        return {"fit": fit, "n_params": len(self.parameters), "condition_number": self.condition_number,
                "verdict": conditioning_verdict(self.condition_number), "threshold": CONDITION_ILL,
                "max_abs_correlation": self.max_abs_correlation, "parameters": list(self.parameters),
                "correlation": [list(row) for row in self.correlation]}


class Residual(NamedTuple):
    N: float
    D: float
    loss: float
    predicted: float


@dataclass(frozen=True, kw_only=True)
class Goodness:
    """How well the fitted law matches one optimizer's runs."""

    n_points: int
    n_cells: int
    rmse: float
    mean_relative_error: float
    residuals: tuple[Residual, ...]

    def to_json(self) -> dict:
        return {"n_points": self.n_points, "rmse": self.rmse, "mean_relative_error": self.mean_relative_error,
                "residuals": [r._asdict() for r in self.residuals]}


# ----------------------------------------------------------------------------- the result

SHARED_NAMES = ("E", "A", "B", "alpha", "beta", "allocation_exponent")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class FitResult:
    """One fitted law: ``fit_separate``, ``fit_shared`` or ``fit_compute`` returns it.

    ``params[name, optimizer]`` (``params["alpha"]`` for a shared one); ``conf_int(level)``
    and ``ci`` (95%) from ``bootstrap_samples`` (None without bootstrap); ``laws[optimizer]``
    the law each optimizer follows; ``solves`` how each solve ended (a separate fit has one
    per optimizer, the shared law one keyed None); ``converged``, ``message`` and ``on_bound``
    summarise them. The compute law adds ``cost_basis``, ``cost_per_ND`` and ``allocation``.
    """

    law: str                      # chinchilla | shared | compute
    variant: str                  # separate | full | rho_D | rho_N
    objective: str                # huber_log | squared
    n_basis: str                  # total | non_embedding | as_given
    reference: str | None
    optimizers: tuple[str, ...]
    params: ParamMap[float]
    laws: Mapping[str, ChinchillaLaw]
    solves: Mapping[str | None, Solve]
    goodness: Mapping[str, Goodness]
    bootstrap_samples: ParamMap[np.ndarray] | None = None
    warnings: tuple[FitWarning, ...] = ()
    cost_basis: str | None = None                      # compute law: how costs were charged, in words
    cost_option: str | None = None                     # compute law: flops | wallclock (--cost)
    cost_measured: bool | None = None                  # compute law: measured costs used (else 6ND assumed)
    cost_per_ND: Mapping[str, float] | None = None     # compute law: optimizer -> k_o
    allocation: Mapping[str, dict] | None = None       # compute law: optimizer -> budgets and data ranges
    # Verdicts: a separate fit keys them by optimizer; the shared law by None (the fit) and by
    # optimizer (its rho's).
    identifiability: Mapping[str | None, Identifiability] = None
    bootstrap_diagnostics: Mapping[str | None, dict] = None   # per solve: how the refits went
    exponent_bounds: tuple[float, float] | None = None         # the solver's search range of alpha, beta
    # Per parameter: the share of resamples that cannot determine it (too few distinct cells).
    bootstrap_undetermined: ParamMap[float] | None = None

    # ------------------------------------------------------------------ how the solves ended
    @property
    def converged(self) -> bool:
        return all(s.converged for s in self.solves.values())

    @property
    def message(self) -> str:
        return "; ".join(_prefixed(opt, s.message) for opt, s in self.solves.items())

    @property
    def on_bound(self) -> tuple[str, ...]:
        return tuple(_prefixed(opt, flag) for opt, s in self.solves.items() for flag in s.on_bound)

    @property
    def n_points(self) -> int:
        return sum(s.n_points for s in self.solves.values())

    @property
    def bootstrap_replicates(self) -> int:
        if not self.bootstrap_samples:
            return 0
        return len(next(iter(self.bootstrap_samples.values())))

    # ------------------------------------------------------------------ intervals
    def conf_int(self, level: float = CI_LEVEL) -> ParamMap[tuple[float, float]]:
        """Bootstrap percentile intervals at ``level`` for every parameter with samples (empty without bootstrap)."""
        if self.bootstrap_samples is None:
            if not 0.0 < level < 1.0:
                raise ValueError(f"level must be in (0, 1), got {level}")
            return ParamMap()
        out = percentile_intervals(self.bootstrap_samples, level)
        tail = (1 - level) / 2
        for key, share in (self.bootstrap_undetermined or {}).items():
            # More resamples without a unique optimum than the interval's tail: where those land
            # is the solver's choice, not the data's, so the interval is unbounded.
            if share > tail and key in out:
                out[key] = (0.0, 1.0 if key.name == "allocation_exponent" else math.inf)
        if self.exponent_bounds is not None:
            # An exponent's interval end on the search bound is censored there: the data allow
            # any value beyond it, so the end is reported as unbounded (0 or infinity).
            lo_bound, hi_bound = self.exponent_bounds
            for key, (lo, hi) in out.items():
                if key.name in EXPONENTS:
                    out[key] = (0.0 if lo <= lo_bound * (1 + SEARCH_BOUND_TOL) else lo,
                                math.inf if hi >= hi_bound * (1 - SEARCH_BOUND_TOL) else hi)
        return ParamMap(out)

    @cached_property
    def ci(self) -> ParamMap[tuple[float, float]]:
        """The 95% intervals (``conf_int(0.95)``), as fit.json reports them."""
        return self.conf_int(CI_LEVEL)

    def param(self, name: str, optimizer: str | None = None) -> float:
        return self.params[name, optimizer]

    # ------------------------------------------------------------------ predictions
    def _law(self, optimizer: str) -> ChinchillaLaw:
        if optimizer not in self.laws:
            raise KeyError(f"optimizer {optimizer!r} not in this fit; fitted: {', '.join(self.laws)}")
        return self.laws[optimizer]

    def predict(self, N, D, optimizer: str) -> np.ndarray:
        """Predicted loss at model size N and tokens D (arrays broadcast) for ``optimizer``."""
        return self._law(optimizer).loss(N, D)

    def cost_of(self, optimizer: str) -> float:
        """Cost of one unit of N*D for ``optimizer``: the compute law's k_o, else 6 (C = 6 N D)."""
        self._law(optimizer)
        return self.cost_per_ND[optimizer] if self.cost_per_ND is not None else DEFAULT_COST_PER_ND

    def compute_cost(self, N, D, optimizer: str) -> np.ndarray:
        """Compute C = k_o N D of a run of ``optimizer`` (see ``cost_of``)."""
        return self.cost_of(optimizer) * np.asarray(N, dtype=float) * np.asarray(D, dtype=float)

    def compute_optimal(self, C, optimizer: str):
        """N*(C), D*(C), L*(C): the allocation of budget C minimising ``optimizer``'s loss."""
        return self._law(optimizer).compute_optimal(self.cost_of(optimizer), C)

    def frontier_band(self, C, optimizer: str, level: float = CI_LEVEL,
                      relative_to: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise bootstrap interval of L*(C) for ``optimizer`` (shared laws with samples; else None);
        with ``relative_to``, of L*_optimizer(C) - L*_relative_to(C), replicate by replicate.

        Each replicate's law is the reference's rescaled by that replicate's rho's:
        A_o = A rho_N^-alpha, B_o = B rho_D^-beta.
        """
        b = self.bootstrap_samples
        if b is None or self.reference is None:
            return None
        L = self._replicate_frontier(C, optimizer)
        if L is not None and relative_to is not None:
            base = self._replicate_frontier(C, relative_to)
            L = None if base is None else L - base
        if L is None:
            return None
        L = np.where(np.isfinite(L), L, np.nan)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        with warnings.catch_warnings():   # budgets where no replicate has a finite optimum: NaN, not noise
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanpercentile(L, q, axis=0)
        return lo, hi

    def _replicate_frontier(self, C, optimizer: str) -> np.ndarray | None:
        """L*(C) of every bootstrap replicate's law for ``optimizer`` (replicates x budgets)."""
        b = self.bootstrap_samples
        a, be = b["alpha"][:, None], b["beta"][:, None]
        if optimizer != self.reference and ("rho_N", optimizer) not in b and ("rho_D", optimizer) not in b:
            return None
        ones = np.ones_like(a)   # the reference, and the factor a one-rho variant does not fit
        rho_N = b["rho_N", optimizer][:, None] if ("rho_N", optimizer) in b else ones
        rho_D = b["rho_D", optimizer][:, None] if ("rho_D", optimizer) in b else ones
        with np.errstate(all="ignore"):
            _, _, L = compute_optimal(a, be, b["E"][:, None], b["A"][:, None] * rho_N ** -a,
                                      b["B"][:, None] * rho_D ** -be, self.cost_of(optimizer),
                                      np.asarray(C, dtype=float)[None, :])
        return L

    # ------------------------------------------------------------------ text and JSON
    def summary(self) -> str:
        """A short text table of parameters with 95% intervals and the main diagnostics."""
        lines = [f"law={self.law} variant={self.variant} objective={self.objective} N={self.n_basis} "
                 f"reference={self.reference} n_points={self.n_points} bootstrap={self.bootstrap_replicates}",
                 f"converged={self.converged}: {self.message}",
                 f"{'parameter':<28} {'value':>12} {'ci_low':>12} {'ci_high':>12}"]
        for key, value in self.params.items():
            lo, hi = self.ci.get(key, (math.nan, math.nan))
            lines.append(f"{str(key):<28} {value:>12.5g} {lo:>12.5g} {hi:>12.5g}")
        for opt, s in self.solves.items():
            lines.append(f"{_prefixed(opt, 'solve')}: objective_value={s.objective_value:.6g} "
                         f"condition_number={s.condition_number:.4g}")
        for key, verdict in (self.identifiability or {}).items():
            lines.append(f"{_prefixed(key, 'identifiability')}: {verdict}")
        lines += [f"WARNING on bound: {flag}" for flag in self.on_bound]
        lines += [f"WARNING: {w.message}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:  # the fields hold residuals and bootstrap samples: too long to print
        return (f"FitResult(law={self.law!r}, variant={self.variant!r}, optimizers={self.optimizers!r}, "
                f"n_points={self.n_points}, bootstrap={self.bootstrap_replicates}, converged={self.converged})")

    def to_json(self) -> dict:
        """What fit.json holds for this fit: its top-level sections, as plain JSON.

        A separate fit fills ``separate``; the shared (or compute) law fills ``shared``,
        ``optimizers`` (and ``compute``); each adds its rows of ``conditioning`` and its
        entry of ``residuals``. The study merges these (``optlaw.fit.study``).
        """
        if self.variant == "separate":
            return plain(self._separate_json(), finite_only=True)
        return plain(self._shared_json(), finite_only=True)

    def _ci_list(self, name: str, optimizer: str | None):
        value = self.ci.get((name, optimizer))
        return list(value) if value is not None else None

    def verdict(self, key: str | None) -> Identifiability | None:
        """The identifiability of one solve (a separate fit's optimizer; None: the shared fit) or of
        one optimizer's rho's in the shared law."""
        return (self.identifiability or {}).get(key)

    def interval_widths(self, optimizer: str | None) -> dict:
        """Widths of the 95% intervals of the exponents and the allocation exponent (None without bootstrap)."""
        out = {}
        for name in ("alpha", "beta", "allocation_exponent"):
            ci = self.ci.get((name, optimizer))
            out[name] = None if ci is None else ci[1] - ci[0]
        return out

    def _diagnostics(self, key: str | None) -> dict:
        v = self.verdict(key)
        return {"identifiability": v.to_json() if v is not None else None,
                "bootstrap_refits": (self.bootstrap_diagnostics or {}).get(key)}

    def _separate_json(self) -> dict:
        section, rows = {}, []
        for opt in self.optimizers:
            s, good = self.solves[opt], self.goodness[opt]
            entry = {k: self.params[k, opt] for k in SHARED_NAMES}
            entry.update({
                "ci": {k: self._ci_list(k, opt) for k in SHARED_NAMES},
                "condition_number": s.condition_number, "max_abs_correlation": s.max_abs_correlation,
                "objective_value": s.objective_value, "on_bound": list(s.on_bound), "converged": s.converged,
                "message": s.message, "n_points": s.n_points, "n_cells": s.n_cells, "rmse": good.rmse,
                "mean_relative_error": good.mean_relative_error,
                "conditioning_verdict": conditioning_verdict(s.condition_number)})
            entry.update(self._diagnostics(opt))
            section[opt] = entry
            rows.append(s.conditioning_row(f"separate/{opt}"))
        widths = [{"fit": f"separate/{o}", **self.interval_widths(o)} for o in self.optimizers]
        return {"separate": section, "conditioning": rows, "interval_widths": widths,
                "residuals": {"separate": {o: g.to_json() for o, g in self.goodness.items()}}}

    def _shared_json(self) -> dict:
        s = self.solves[None]
        shared = {k: self.params[k] for k in SHARED_NAMES}
        shared.update({"ci": {k: self._ci_list(k, None) for k in SHARED_NAMES},
                       "objective_value": s.objective_value, "condition_number": s.condition_number,
                       "max_abs_correlation": s.max_abs_correlation, "on_bound": list(s.on_bound),
                       "converged": s.converged, "message": s.message,
                       "conditioning_verdict": conditioning_verdict(s.condition_number)})
        shared.update(self._diagnostics(None))
        optimizers = {}
        for opt in self.optimizers:
            good = self.goodness[opt]
            entry = {"rho_N": self.params["rho_N", opt], "rho_D": self.params["rho_D", opt],
                     "rho_N_ci": self._ci_list("rho_N", opt), "rho_D_ci": self._ci_list("rho_D", opt),
                     "n_points": good.n_points, "n_cells": good.n_cells, "rmse": good.rmse,
                     "mean_relative_error": good.mean_relative_error}
            v = self.verdict(opt)
            entry["identifiability"] = v.to_json() if v is not None else None
            if self.law == "compute":
                entry.update({"compute_multiplier": self.params["compute_multiplier", opt],
                              "compute_multiplier_ci": self._ci_list("compute_multiplier", opt),
                              "cost_per_ND": self.params["cost_per_ND", opt]})
            optimizers[opt] = entry
        out = {"shared": shared, "optimizers": optimizers}
        if self.law == "compute":
            out["compute"] = {"cost_basis": self.cost_basis, "cost_option": self.cost_option,
                              "cost_measured": self.cost_measured, "allocation": self.allocation}
        out["conditioning"] = [s.conditioning_row(f"shared/{self.variant}")]
        out["interval_widths"] = [{"fit": f"shared/{self.variant}", **self.interval_widths(None)}]
        out["residuals"] = {"shared": {o: g.to_json() for o, g in self.goodness.items()}}
        return out


def _prefixed(optimizer: str | None, text: str) -> str:
    return text if optimizer is None else f"{optimizer}: {text}"
