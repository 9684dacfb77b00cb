"""Hyperparameter tuning: the ``tuning:`` block of a sweep, and what a point records of it.

``TuningConfig`` is the sweep side (configs/sweep/<name>.yaml; the protocol is in
docs/sweeps.md, the planner in optlaw.sweep.tuning). ``TuningSourceConfig`` is the point
side: the ``tuning`` section of an ``optlaw train`` (or proxy point) config, which the
sweep sets and the point copies into its run record. It never changes what a point
computes, so it is left out of the run id (optlaw.records.NON_SEMANTIC_KEYS).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from optlaw.config.core import Choice
from optlaw.errors import ConfigError

DEFAULT_TUNED_KEY = "optimizer.lr_mult"


class TuningScope(Choice):
    every_cell = "every_cell"
    per_size = "per_size"
    transfer = "transfer"


class TuneBudget(Choice):
    largest = "largest"
    smallest = "smallest"


class HyperparameterSource(Choice):
    tuned = "tuned"
    predicted = "predicted"
    fixed = "fixed"


@dataclass
class TunedHyperparameterConfig:
    """One tuned key: a log2 grid around its start value, extended while the best sits at an edge."""

    key: str = DEFAULT_TUNED_KEY
    """A train-config key holding a positive number: optimizer.lr_mult, optimizer.groups.hidden_matrix.weight_decay, schedule.warmup_fraction, an optimizer's own key such as optimizer.muon.momentum."""
    start: Optional[float] = None
    """Centre of the first grid; null = the value the cell's composed config has (optimizer.lr_mult: 1.0)."""
    optimizer_starts: Optional[Dict[str, float]] = None
    """Per-optimizer centres of the first grid, e.g. {muon: 16}; an optimizer not named starts at start."""
    step_log2: float = 1.0
    """Grid spacing in log2 units: 1 = factors of 2, 0.5 = factors of sqrt(2)."""
    width: int = 1
    """The first grid has this many steps on each side of the start (1: start/2, start, 2 x start)."""
    max_extensions: int = 4
    """While the best sits at an edge, one step is added beyond it per round, at most this many on each side; then the cell ends unresolved, at the edge."""
    refine: bool = False
    """Once the best is interior, also try the half steps on each side of it (one more round)."""
    optimizers: Optional[List[str]] = None
    """Optimizers this key is tuned for (an optimizer's own key: [muon]); null = every optimizer of the sweep."""

    def check(self) -> None:
        if not self.key:
            raise ConfigError("tuning.hyperparameters: a row has an empty key; name a train-config key, e.g. optimizer.lr_mult")
        where = f"tuning.hyperparameters[{self.key}]"
        if self.start is not None and not self.start > 0:
            raise ConfigError(f"{where}.start={self.start} must be > 0 (the grid is in log2 steps), or null for the configured value")
        for name, value in (self.optimizer_starts or {}).items():
            if not value > 0:
                raise ConfigError(f"{where}.optimizer_starts.{name}={value} must be > 0 (the grid is in log2 steps)")
        if not self.step_log2 > 0:
            raise ConfigError(f"{where}.step_log2={self.step_log2} must be > 0, e.g. 1 for factors of 2")
        if self.width < 1:
            raise ConfigError(f"{where}.width={self.width} must be >= 1 (points on each side of the start)")
        if self.max_extensions < 0:
            raise ConfigError(f"{where}.max_extensions={self.max_extensions} must be >= 0")
        if self.optimizers == []:
            raise ConfigError(f"{where}.optimizers is empty; list the optimizers it is tuned for, or null for all")


@dataclass
class TuningConfig:
    """Tune hyperparameters per cell (a cell = one point of the grid without its seeds) in rounds of ordinary grid points; docs/sweeps.md, "Tuning"."""

    enabled: bool = False
    """Plan the grid's hyperparameters by tuning instead of taking them as configured."""
    hyperparameters: List[TunedHyperparameterConfig] = field(default_factory=lambda: [TunedHyperparameterConfig()])
    """Keys tuned by coordinate descent in this order: each with the earlier ones at their winners and the later ones at their start."""
    passes: int = 1
    """Coordinate-descent passes over the list; a second pass re-tunes each key around its winner with the others at theirs."""
    tolerance: Optional[float] = None
    """A neighbour of the best counts as worse when its loss is higher by more than this (nats); null = the seed noise (std between seeds of one setting, pooled over the cell; 0 with one seed)."""
    scope: TuningScope = TuningScope.every_cell
    """every_cell: tune each (model, budget, optimizer) cell | per_size: tune each (model, optimizer) at one budget (tune_budget) and reuse the winner at its other budgets | transfer: tune the sizes in tune_models, fit log h* = c + a log N + b log D per optimizer and key, and set the other sizes from its prediction."""
    tune_budget: TuneBudget = TuneBudget.largest
    """per_size: the budget tuned (with budget branching it must be largest: the WSD trunk)."""
    tune_models: Optional[List[str]] = None
    """transfer: the model sizes tuned (at least two); the sweep's other sizes get predicted values."""
    law_terms: Optional[List[str]] = None
    """Terms of the law log h* = c + a log N + b log D that may be fitted: null = all three (dropping what the cells cannot identify); [c, b] when the parametrization already carries the size dependence (muP, Muon's spectral scaling), so the tuned sizes' narrow N range is not extrapolated."""
    law_bootstrap: int = 1000
    """Bootstrap replicates (cells resampled) for the intervals of the hyperparameter laws (fitted in every scope; transfer predicts from them)."""

    def check(self) -> None:
        if not self.enabled:
            return
        if not self.hyperparameters:
            raise ConfigError("tuning.hyperparameters is empty; list at least one key, e.g. [{key: optimizer.lr_mult}]")
        keys = [h.key for h in self.hyperparameters]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ConfigError(f"tuning.hyperparameters names {repeated} twice; list each key once (passes: N re-tunes them)")
        if self.passes < 1:
            raise ConfigError(f"tuning.passes={self.passes} must be >= 1")
        if self.tolerance is not None and self.tolerance < 0:
            raise ConfigError(f"tuning.tolerance={self.tolerance} must be >= 0 (nats), or null for the seed noise")
        if self.law_terms is not None and (not set(self.law_terms) <= {"c", "a", "b"} or "c" not in self.law_terms):
            raise ConfigError(f"tuning.law_terms={list(self.law_terms)} must include c and name only c, a, b "
                              "(e.g. [c, b]), or be null for all three")
        if self.law_bootstrap < 0:
            raise ConfigError(f"tuning.law_bootstrap={self.law_bootstrap} must be >= 0")
        if self.scope == TuningScope.transfer and not self.tune_models:
            raise ConfigError("tuning.scope=transfer needs tuning.tune_models: the sizes to tune, e.g. [llama/100k, llama/250k]")
        if self.scope != TuningScope.transfer and self.tune_models:
            raise ConfigError(f"tuning.tune_models is set but tuning.scope={self.scope}; use scope: transfer or drop tune_models")


@dataclass
class TuningSourceConfig:
    """Where this point's hyperparameters came from. Set by `optlaw sweep` on the points of a tuning sweep and copied into the run record's `tuning`; never part of the run id."""

    source: HyperparameterSource = HyperparameterSource.fixed
    """tuned (a point of a tuning round, or a tuned winner reused) | predicted (from a hyperparameter law) | fixed (as configured)."""
    cell: Optional[str] = None
    """The tuning cell the point belongs to, e.g. 'llama/1m adamw tokens=32768'."""
    round: Optional[int] = None
    """The cell's tuning round that planned the point (1 = the first grid)."""
    coordinate: Optional[str] = None
    """tuned: the key being tuned when the point was planned."""
    values: Dict[str, float] = field(default_factory=dict)
    """The tuned keys and this point's value of each."""
    positions: Dict[str, float] = field(default_factory=dict)
    """tuned: per key, grid steps from its start value (0 = start, -1 = one step lower, 0.5 = a half step)."""
    reused_from: Optional[str] = None
    """tuned: the cell whose winner this point reuses (scope per_size), else null."""
    predicted: Dict[str, Any] = field(default_factory=dict)
    """predicted: per key {value, low, high, level, c, a, b, n_cells}: the law's prediction, its interval and coefficients."""
