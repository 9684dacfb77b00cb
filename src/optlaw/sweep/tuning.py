"""Tuning sweeps: plan rounds of ordinary grid points from the finished records (docs/sweeps.md, "Tuning").

``TuningPlanner`` turns a sweep definition with ``tuning.enabled`` into cells (one point of
the grid without its seeds) with a role each, then, at every ``plan()``, replays them on the
records (optlaw.sweep.tuning_replay) and composes the points of every round so far. How those
points run is the caller's business (optlaw.sweep.rounds, the launchers).

Cost control (``tuning.scope``):
- ``every_cell``: every cell is tuned;
- ``per_size``: the cell at ``tune_budget`` of each (model, optimizer, other axes) is tuned;
  its other budgets are *reused* cells that train the winner once it is known (with budget
  branching the tuned budget is the WSD trunk and the reused budgets branch off the winner);
- ``transfer``: the cells of ``tune_models`` are tuned; per optimizer and key a law
  ``log h* = c + a log N + b log D`` is fitted to their optima (optlaw.sweep.hparam_law) and
  the other sizes are *predicted* cells that train the law's value.
Cells whose optimizer has no tuned key are *fixed* cells: one setting, as configured.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from optlaw import records
from optlaw.jsonio import plain
from optlaw.config.sweep import SweepConfig
from optlaw.config.tuning import TunedHyperparameterConfig, TuneBudget, TuningScope
from optlaw.errors import ConfigError
from optlaw.sweep.grid import (LLM_POINTS, GridPoint, PointNaming, axes_of, axis_combinations, budget_keys,
                               checked_sweep, fixed_overrides, format_override_value, make_point, with_values,
                               within_tokens_per_param_range)
from optlaw.sweep.tuning_replay import replay
from optlaw.sweep.tuning_state import (FIXED, PREDICTED, REUSED, TUNED, CellSpec, RunResult, TuningState,
                                       is_finished)

SIZE_KEYS = ("model",)


def cell_label(axes: dict[str, Any]) -> str:
    """E.g. ``llama/1m adamw tokens=32768``: model, optimizer, then every other axis as key=value."""
    parts = [str(axes[k]) for k in ("model", "optimizer") if k in axes]
    for key, value in axes.items():
        if key in ("model", "optimizer"):
            continue
        name = {"budget.tokens": "tokens", "budget.tokens_per_param": "tpp"}.get(key, key)
        parts.append(f"{name}={value}")
    return " ".join(parts) or "(the only cell)"


@dataclass
class TuningPlan:
    """One plan of a tuning sweep: every point planned so far (all rounds) and the state of every cell."""

    points: list[GridPoint]
    state: TuningState
    cells: list[CellSpec]

    @property
    def complete(self) -> bool:
        return self.state.complete

    def manifest_section(self) -> dict:
        """What the manifest keeps of the plan: the cells (read back by ``read_tuning``)."""
        return {"cells": [c.to_json() for c in self.cells]}


class TuningPlanner:
    """Plans a tuning sweep from its records; keep one per launch so composed points are reused.

    ``sweep_dir`` holds the records; ``naming`` names points (the entry layer's POINT_NAMING).
    ``plan()`` may be called after every round: only points of new rounds are composed.
    """

    def __init__(self, definition: dict | SweepConfig, sweep_dir: str | Path, extra_fixed: list[str] | None = None,
                 naming: PointNaming = LLM_POINTS):
        self.sweep = checked_sweep(definition, naming)
        self.definition = definition if isinstance(definition, dict) else plain(self.sweep)  # as the manifest keeps it
        if not self.sweep.tuning.enabled:
            raise ConfigError(f"sweep {self.sweep.name}: tuning is not enabled (tuning.enabled: true)")
        self.tuning = self.sweep.tuning
        self.sweep_dir = Path(sweep_dir)
        self.naming = naming
        self.fixed = fixed_overrides(self.sweep, extra_fixed)
        self._composed: dict[tuple, GridPoint] = {}
        self._anchors: list[GridPoint] = []  # points composed by Hydra; the others derive from them
        self._decay_starts: dict[tuple, int] = {}
        self._results: dict[str, tuple[tuple, RunResult | None]] = {}  # run id -> (run.json's stat, result)
        self.cells = self._cells()

    # -- cells --
    def _cells(self) -> list[CellSpec]:
        combos = axis_combinations(self.sweep)
        by_cell: dict[tuple, tuple[dict, list]] = {}
        for axes in combos:
            cell_axes = {k: v for k, v in axes.items() if k != "seed"}
            key = tuple((k, repr(v)) for k, v in cell_axes.items())
            by_cell.setdefault(key, (cell_axes, []))[1].append(axes.get("seed"))
        budget_axis = next(iter(budget_keys(self.sweep)), None)
        # The cells the grid keeps: tokens_per_param_range drops a size's budgets outside its band, as in
        # a sweep without tuning (optlaw.sweep.grid.expand_grid).
        bases = {key: self._point(cell_axes, seeds[0], {}) for key, (cell_axes, seeds) in by_cell.items()}
        kept = {id(p) for p in within_tokens_per_param_range(self.sweep, list(bases.values()))}
        by_cell = {key: value for key, value in by_cell.items() if id(bases[key]) in kept}
        # Per size (model and every other axis but the budget), the budgets it keeps: per_size tunes its
        # largest (or smallest) one, and with budget branching its longest is the trunk every budget shares.
        size_budgets: dict[tuple, list] = {}
        for cell_axes, _ in by_cell.values():
            size_budgets.setdefault(_size_key(cell_axes, budget_axis), []).append(cell_axes.get(budget_axis))
        cells = []
        for key, (cell_axes, seeds) in by_cell.items():
            keys = [row.key for row in self.tuning.hyperparameters
                    if row.optimizers is None or cell_axes.get("optimizer") in row.optimizers]
            base = bases[key]
            label = cell_label(cell_axes)
            group_axes = {k: v for k, v in cell_axes.items() if k not in SIZE_KEYS and k != budget_axis}
            spec = CellSpec(label=label, axes=cell_axes, seeds=seeds, role=FIXED, keys=keys,
                            starts={row.key: self._start(row, base, label) for row in self.tuning.hyperparameters
                                    if row.key in keys},
                            N=float(base.plan.n_basis) if base.plan else None, D=base.tokens,
                            group=cell_label(group_axes))
            if keys:
                budgets = [b for b in size_budgets[_size_key(cell_axes, budget_axis)] if b is not None]
                tuned_budget = None
                if budgets:
                    tuned_budget = max(budgets) if self.tuning.tune_budget == TuneBudget.largest else min(budgets)
                spec.role = self._role(cell_axes, budget_axis, tuned_budget)
                if spec.role == REUSED:
                    source_axes = {**cell_axes, budget_axis: tuned_budget}
                    spec.source = cell_label(source_axes)
                if spec.role == PREDICTED and self.sweep.branching.enabled and budgets:
                    trunk = bases[tuple((k, repr(v)) for k, v in {**cell_axes, budget_axis: max(budgets)}.items())]
                    spec.predict_D = trunk.tokens
            cells.append(spec)
        return cells

    def _role(self, cell_axes: dict, budget_axis: str | None, tuned_budget: Any) -> str:
        scope = self.tuning.scope
        if scope == TuningScope.per_size and budget_axis is not None and cell_axes.get(budget_axis) != tuned_budget:
            return REUSED
        if scope == TuningScope.transfer and cell_axes.get("model") not in (self.tuning.tune_models or []):
            return PREDICTED
        return TUNED

    def _start(self, row: TunedHyperparameterConfig, base: GridPoint, label: str) -> Any:
        optimizer = base.axes.get("optimizer")
        if row.optimizer_starts and optimizer in row.optimizer_starts:
            return row.optimizer_starts[optimizer]
        if row.start is not None:
            return row.start
        value = OmegaConf.select(base.cfg, row.key, default=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"sweep {self.sweep.name}: tuning key {row.key} is {value!r} in cell {label}; it must name a number "
                f"in the train config (check the key, or limit it to some optimizers with its optimizers: [...])")
        if not value > 0:
            raise ConfigError(
                f"sweep {self.sweep.name}: tuning key {row.key} is {value} in cell {label}; a log2 grid needs a "
                f"positive start: set its start in tuning.hyperparameters")
        return value

    # -- points --
    def _point(self, cell_axes: dict, seed: Any, values: dict) -> GridPoint:
        """The cell's point at ``values``: the tuned keys' overrides come after ``fixed`` (and the command
        line's), so they win over a configured value; composed once per cell and seed, derived after."""
        axes = dict(cell_axes)
        if seed is not None:
            axes["seed"] = seed
        key = tuple((k, repr(v)) for k, v in [*axes.items(), *values.items()])
        if key not in self._composed:
            if values:
                base = self._point(cell_axes, seed, {})
                self._composed[key] = with_values(self.sweep.name, base, values, self.naming)
            else:
                self._composed[key] = make_point(self.sweep.name, axes, self.fixed, self.naming, like=self._anchors)
        return self._composed[key]

    def plan(self) -> TuningPlan:
        """Replay every cell on the records in ``sweep_dir``; the points of every round so far."""
        planned: dict[str, GridPoint] = {}

        def ids_for(spec: CellSpec, values: dict, provenance: dict) -> list[str]:
            ids = []
            for seed in spec.seeds:
                point = _copy_point(self._point(spec.axes, seed, values))
                if point.run_id not in planned:  # the first plan of a point names its provenance
                    point.overrides += provenance_overrides(provenance)
                    point.extra["tuning"] = provenance | {"N": spec.N, "D": spec.D}
                    planned[point.run_id] = point
                ids.append(point.run_id)
            return ids

        state = replay(self.tuning, self.cells, ids_for, self._result)
        points = list(planned.values())
        if self.sweep.branching.enabled:
            self._plan_branches(points)
        return TuningPlan(points, state, self.cells)

    def _result(self, run_id: str) -> RunResult | None:
        """The run's result; read again only when its run.json changed (a launch replans whenever a
        point ends, and most records it reads have not moved since the last plan)."""
        run_dir = self.sweep_dir / "runs" / run_id
        try:
            stat = (run_dir / records.RECORD_NAME).stat()
        except OSError:
            self._results.pop(run_id, None)
            return RunResult.of_record(records.read_record(run_dir))
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._results.get(run_id)
        if cached is None or cached[0] != seen:
            cached = (seen, RunResult.of_record(records.read_record(run_dir)))
            self._results[run_id] = cached
        return cached[1]

    def _decay_start(self, trunk: GridPoint, budget_key: str, budget: Any) -> int:
        """``_decay_start_tokens``, once per trunk and budget: every plan asks again (a launch replans
        whenever a point ends), and it composes a budget plan from a copy of the trunk's config."""
        key = (trunk.run_id, budget_key, repr(budget))
        if key not in self._decay_starts:
            self._decay_starts[key] = _decay_start_tokens(trunk, budget_key, budget)
        return self._decay_starts[key]

    # -- budget branching over the points planned so far --
    def _plan_branches(self, points: list[GridPoint]) -> None:
        """A longest-budget point keeps a checkpoint at every shorter budget's decay start (the winner is not
        known when it trains); a shorter point branches off the longest planned point with its other axes,
        unless that one already finished without the checkpoint (then it trains from scratch)."""
        from optlaw.train.checkpoint import keep_path

        key = next(iter(budget_keys(self.sweep)))
        budgets = sorted(dict(axes_of(self.sweep))[key])
        longest: dict[tuple, Any] = {}  # per size, its longest kept budget (tokens_per_param_range may drop some)
        for spec in self.cells:
            size = _size_key(spec.axes, key)
            longest[size] = max(longest.get(size, spec.axes[key]), spec.axes[key])
        groups: dict[tuple, list[GridPoint]] = {}
        for point in points:
            groups.setdefault(tuple((k, repr(v)) for k, v in point.axes.items() if k != key), []).append(point)
        for group in groups.values():
            trunk = max(group, key=lambda p: p.tokens or 0)
            cell_axes = {k: v for k, v in trunk.axes.items() if k in self.cells[0].axes}
            if trunk.axes[key] != longest.get(_size_key(cell_axes, key), budgets[-1]):
                continue  # only a longest-budget point is sure to keep every checkpoint from its start
            keeps = {self._decay_start(trunk, key, b) for b in budgets[:-1]}
            for point in group:
                if point is trunk:
                    continue
                start = point.plan.tokens_at(point.plan.decay_start_step)
                trunk_done = is_finished(self._result(trunk.run_id))
                if trunk_done and not keep_path((self.sweep_dir / "runs" / trunk.run_id).resolve(), start).exists():
                    continue  # the trunk trained without this checkpoint: train the point from scratch
                keeps.add(start)
                point.extra["branch_from"] = {"run_id": trunk.run_id, "tokens": start}
            if keeps:
                trunk.overrides.append(f"checkpoint.keep_at_tokens={format_override_value(sorted(keeps))}")
                trunk.extra["branch_trunk"] = True


def _size_key(cell_axes: dict, budget_axis: str | None) -> tuple:
    """A cell's axes without its budget: the cells of one size (and optimizer, and any other axis)."""
    return tuple((k, repr(v)) for k, v in cell_axes.items() if k != budget_axis)


def _copy_point(point: GridPoint) -> GridPoint:
    return replace(point, overrides=list(point.overrides), axes=dict(point.axes), extra=copy.deepcopy(point.extra))


def _decay_start_tokens(point: GridPoint, budget_key: str, budget: Any) -> int:
    """Tokens at the decay start of ``point``'s model trained at another budget (its own plan otherwise)."""
    from optlaw.models import model_stats
    from optlaw.train.budget import plan_budget

    cfg = copy.deepcopy(point.cfg)
    OmegaConf.update(cfg, budget_key, budget)
    stats = model_stats(cfg.model)
    plan = plan_budget(cfg, stats.n_total, stats.n_non_embedding)
    return plan.tokens_at(plan.decay_start_step)


def provenance_overrides(provenance: dict) -> list[str]:
    """The point's ``tuning`` section as train overrides (``++`` sets the free-form mappings whole)."""
    out = []
    for key, value in provenance.items():
        if isinstance(value, dict):
            out.append(f"++tuning.{key}={format_override_value(_plain_numbers(value))}")
        elif isinstance(value, str):
            out.append(f"tuning.{key}='{value}'")
        else:
            out.append(f"tuning.{key}={format_override_value(value)}")
    return out


def _plain_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


