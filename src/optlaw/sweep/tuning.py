"""Tuning sweeps: rounds of ordinary grid points, planned from the finished records.

A *cell* is one point of the grid without its seeds (model x budget x optimizer x any other
axis). A *setting* is one value of every tuned key; it is trained once per seed, and its loss
is the mean final validation loss over the seeds (a diverged seed makes it infinite). Each
tuned cell walks its keys by coordinate descent (``tuning.hyperparameters`` in order, for
``tuning.passes`` passes); along one key the bracket rule (optlaw.sweep.bracket) turns the
losses of a round into the next round's values, or into a verdict.

Nothing about the state is stored. Every plan *replays* each cell from its first round,
reading the losses of finished records: a round whose points are all finished yields the
next round; the first round with an unfinished point is the cell's current round. Results
only accumulate, so a replay never contradicts an earlier one: relaunching continues where
a launch stopped, and killing a launch loses nothing but the points it was training (which
resume from their checkpoints). The noise threshold of each decision is computed from the
settings finished before it, in replay order, for the same reason.

Cost control (``tuning.scope``):
- ``every_cell``: every cell is tuned;
- ``per_size``: the cell at ``tune_budget`` of each (model, optimizer, other axes) is tuned;
  its other budgets are *reused* cells that train the winner once it is known (with budget
  branching the tuned budget is the WSD trunk and the reused budgets branch off the winner);
- ``transfer``: the cells of ``tune_models`` are tuned; per optimizer and key a law
  ``log h* = c + a log N + b log D`` is fitted to their optima (optlaw.sweep.hparam_law) and
  the other sizes are *predicted* cells that train the law's value.
Cells whose optimizer has no tuned key are *fixed* cells: one setting, as configured.

The same replay serves the planner (``TuningPlanner``: composes the points of new rounds) and
readers of a sweep directory (``read_tuning``: ``optlaw status``, the fitting stage), which
look the points up in the manifest instead of composing them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from optlaw import records
from optlaw.config import as_config
from optlaw.config.core import plain
from optlaw.config.sweep import SweepConfig
from optlaw.config.tuning import TunedHyperparameterConfig, TuneBudget, TuningConfig, TuningScope
from optlaw.errors import ConfigError
from optlaw.sweep.bracket import BracketRule, Verdict, decide
from optlaw.sweep.grid import (LLM_POINTS, GridPoint, PointNaming, axes_of, axis_combinations, budget_keys,
                               checked_sweep, fixed_overrides, format_override_value, make_point, with_values)
from optlaw.sweep.hparam_law import HyperparameterLaw, LawCell, curve_minimum, fit_law

TUNED, REUSED, PREDICTED, FIXED = "tuned", "reused", "predicted", "fixed"
# Cell states: a tuned cell is tuning until its verdict, then resolved or unresolved; a reused or
# predicted cell waits for its source, then is planned; every cell is done once its points are.
TUNING, RESOLVED, UNRESOLVED, WAITING, PLANNED, DONE, BLOCKED = (
    "tuning", "resolved", "unresolved", "waiting", "planned", "done", "blocked")
# Significant digits of a predicted value: the run id hashes it, so it must not move with the
# last bits of a least-squares solve on another machine; 4 digits are far below the law's error.
PREDICTION_DIGITS = 4
SIZE_KEYS = ("model",)


def value_at(start: Any, step_log2: float, position: int) -> Any:
    """The value at ``position`` half steps from ``start``; the start itself is kept as given
    (an integer start stays an integer, so the point at the start has the plain config's run id)."""
    if position == 0:
        return start
    return float(start) * 2.0 ** (position * step_log2 / 2)


@dataclass
class RunResult:
    """What the planner reads from one run's record."""

    status: str
    loss: float | None

    @classmethod
    def of_record(cls, record: dict | None) -> RunResult | None:
        if record is None:
            return None
        loss = record.get("final_val_loss")
        return cls(str(record.get("status")), float(loss) if loss is not None else None)


@dataclass
class CellSpec:
    """One cell of a tuning sweep: its axes, seeds, role and the tuned keys' start values."""

    label: str
    axes: dict[str, Any]              # the cell's axes (train key -> value), seed excluded
    seeds: list[Any]                  # values of the seed axis ([None]: no seed axis)
    role: str                         # tuned | reused | predicted | fixed
    keys: list[str]                   # tuned keys of this cell's optimizer, in coordinate order
    starts: dict[str, Any]            # key -> start value (its composed value, or the row's start)
    N: float | None                   # the record's N (plan.n_basis) and D (tokens trained), for laws
    D: float | None
    group: str                        # the law group: the optimizer, plus any axis other than size, budget, seed
    source: str | None = None         # reused: the tuned cell's label

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> CellSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass
class CoordinateState:
    """One key's walk within a cell: the values tried, their losses and the bracket's verdict."""

    key: str
    pass_index: int
    centre: int
    step_log2: float
    values: dict[int, Any] = field(default_factory=dict)            # position -> value
    losses: dict[int, float] = field(default_factory=dict)          # position -> mean loss (finished)
    run_ids: dict[int, list[str]] = field(default_factory=dict)     # position -> run id per seed
    verdict: Verdict | None = None                                  # None while its round is unfinished

    def bracket_values(self) -> tuple[Any, Any] | None:
        if self.verdict is None or self.verdict.bracket is None:
            return None
        low, high = self.verdict.bracket
        return self.values[low], self.values[high]

    def curve(self) -> tuple[list[float], list[float]]:
        """(values, losses) of the finished settings, in value order."""
        positions = sorted(self.losses)
        return [float(self.values[p]) for p in positions], [self.losses[p] for p in positions]

    def to_json(self) -> dict:
        verdict = self.verdict
        return {
            "key": self.key, "pass": self.pass_index,
            "points": [{"position": p / 2, "value": self.values[p], "loss": _finite_or_none(self.losses.get(p)),
                        "diverged": p in self.losses and not math.isfinite(self.losses[p]),
                        "run_ids": self.run_ids.get(p, [])} for p in sorted(self.values)],
            "best": None if verdict is None or verdict.best is None else self.values[verdict.best],
            "bracket": list(self.bracket_values() or []) or None,
            "resolved": bool(verdict and verdict.resolved), "at_edge": bool(verdict and verdict.at_edge),
            "finished": bool(verdict and verdict.finished), "reason": verdict.reason if verdict else "round unfinished",
        }


@dataclass
class CellState:
    """Where one cell stands after the replay."""

    spec: CellSpec
    status: str
    round: int = 0
    coordinates: list[CoordinateState] = field(default_factory=list)
    setting: dict[str, Any] = field(default_factory=dict)   # the winner (tuned) or the values trained (others)
    winner_run_ids: list[str] = field(default_factory=list)
    winner_loss: float | None = None
    pending: list[str] = field(default_factory=list)         # run ids of the current round not finished yet
    unplanned: int = 0                                       # settings of the current round not in the manifest yet
    note: str = ""
    predicted: dict[str, dict] = field(default_factory=dict)  # predicted cells: key -> prediction

    @property
    def finished(self) -> bool:
        return self.status in (RESOLVED, UNRESOLVED, DONE)

    @property
    def last_pass(self) -> list[CoordinateState]:
        if not self.coordinates:
            return []
        last = self.coordinates[-1].pass_index
        return [c for c in self.coordinates if c.pass_index == last]

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED

    @property
    def at_edge(self) -> bool:
        return any(c.verdict is not None and c.verdict.at_edge for c in self.last_pass)

    def final_coordinate(self, key: str) -> CoordinateState | None:
        """The last walk along ``key`` (the one a law or a loss-vs-value plot uses)."""
        walks = [c for c in self.coordinates if c.key == key]
        return walks[-1] if walks else None

    def to_json(self) -> dict:
        return {
            "cell": self.spec.label, "role": self.spec.role, "status": self.status, "round": self.round,
            "optimizer": self.spec.axes.get("optimizer"), "model": self.spec.axes.get("model"),
            "axes": self.spec.axes, "N": self.spec.N, "D": self.spec.D, "group": self.spec.group,
            "keys": self.spec.keys, "starts": self.spec.starts, "reused_from": self.spec.source,
            "setting": self.setting, "winner_run_ids": self.winner_run_ids,
            "winner_loss": _finite_or_none(self.winner_loss), "resolved": self.resolved, "at_edge": self.at_edge,
            "pending": self.pending, "note": self.note, "predicted": self.predicted,
            "coordinates": [c.to_json() for c in self.coordinates],
        }


@dataclass
class TuningState:
    """Every cell after the replay, the laws fitted (transfer), and whether the tuning is over."""

    cells: list[CellState]
    laws: dict[tuple[str, str], HyperparameterLaw]

    @property
    def complete(self) -> bool:
        return all(c.status in (RESOLVED, UNRESOLVED, DONE) and not c.pending for c in self.cells)

    @property
    def pending(self) -> list[str]:
        return [r for c in self.cells for r in c.pending]

    def cell(self, label: str) -> CellState:
        for state in self.cells:
            if state.spec.label == label:
                return state
        raise KeyError(label)

    def winners(self) -> dict[str, list[str]]:
        """Cell label -> the run ids (one per seed) that stand for the cell in a fit."""
        return {c.spec.label: list(c.winner_run_ids) for c in self.cells if c.winner_run_ids}

    def to_json(self) -> dict:
        return {"complete": self.complete, "cells": [c.to_json() for c in self.cells],
                "laws": [law.to_json() for law in self.laws.values()]}


# (cell, {key: value}, provenance) -> the run ids of the setting's seeds, or None when the point is not planned.
IdsFor = Callable[[CellSpec, dict, dict], "list[str] | None"]
ResultOf = Callable[[str], "RunResult | None"]


def replay(tuning: TuningConfig, cells: list[CellSpec], ids_for: IdsFor, result_of: ResultOf,
           law_seed: int = 0) -> TuningState:
    """Replay every cell from its first round on the results at hand (see the module docstring)."""
    rows = {row.key: row for row in tuning.hyperparameters}
    states: dict[str, CellState] = {}
    for spec in cells:
        if spec.role == TUNED:
            states[spec.label] = _replay_tuned(spec, rows, tuning, ids_for, result_of)
    for spec in cells:
        if spec.role == REUSED:
            states[spec.label] = _replay_reused(spec, states[spec.source], ids_for, result_of)
    # Laws of every group whose tuned cells have all finished: transfer predicts from them, and
    # the fitting stage reports them for any scope.
    laws = fit_laws([states[s.label] for s in cells if s.role == TUNED], tuning.law_bootstrap, law_seed,
                    only_finished_groups=True)
    for spec in cells:
        if spec.role == PREDICTED:
            group_tuned = [states[s.label] for s in cells if s.role == TUNED and s.group == spec.group]
            states[spec.label] = _replay_predicted(spec, group_tuned, laws, ids_for, result_of)
        elif spec.role == FIXED:
            states[spec.label] = _planned_setting(spec, {}, _provenance(spec, FIXED), 1, ids_for, result_of)
    return TuningState([states[s.label] for s in cells], laws)


def _replay_tuned(spec: CellSpec, rows: dict[str, TunedHyperparameterConfig], tuning: TuningConfig,
                  ids_for: IdsFor, result_of: ResultOf) -> CellState:
    positions = {key: 0 for key in spec.keys}
    state = CellState(spec, TUNING)
    seen: dict[tuple, list[float]] = {}   # setting -> seed losses, in the order settings finished
    for pass_index in range(tuning.passes):
        for key in spec.keys:
            row = rows[key]
            rule = BracketRule(row.width, row.max_extensions, row.refine)
            walk = CoordinateState(key, pass_index, positions[key], row.step_log2)
            state.coordinates.append(walk)
            proposals = rule.first_grid(walk.centre)
            while True:
                state.round += 1
                unfinished: list[str] = []
                for position in proposals:
                    setting_positions = {**positions, key: position}
                    values = {k: value_at(spec.starts[k], rows[k].step_log2, setting_positions[k]) for k in spec.keys}
                    walk.values[position] = values[key]
                    provenance = _provenance(spec, TUNED, state.round, values, coordinate=key,
                                             positions={k: p / 2 for k, p in setting_positions.items()})
                    ids = ids_for(spec, values, provenance)
                    if ids is None:
                        state.unplanned += 1
                        continue
                    walk.run_ids[position] = ids
                    loss, seed_losses = _setting_loss(ids, result_of)
                    if loss is None:
                        unfinished += [r for r in ids if not _finished(result_of(r))]
                        continue
                    walk.losses[position] = loss
                    seen.setdefault(tuple(sorted(values.items())), seed_losses)
                if unfinished or state.unplanned:
                    state.pending = unfinished
                    state.note = f"round {state.round}: {key} at {_values_text(walk, proposals)}"
                    return state
                threshold = tuning.tolerance if tuning.tolerance is not None else seed_noise(list(seen.values()))
                walk.verdict = decide(walk.losses, rule, threshold, walk.centre)
                if walk.verdict.finished:
                    break
                proposals = list(walk.verdict.proposals)
            if walk.verdict.best is not None:
                positions[key] = walk.verdict.best
    last = state.last_pass
    state.status = RESOLVED if all(c.verdict.resolved for c in last) else UNRESOLVED
    state.note = "; ".join(f"{c.key}: {c.verdict.reason}" for c in last)
    best = [c for c in last if c.verdict.best is not None]
    final = state.coordinates[-1]
    if final.verdict.best is not None:
        state.winner_run_ids = final.run_ids[final.verdict.best]
        state.winner_loss = final.losses[final.verdict.best]
    state.setting = {k: value_at(spec.starts[k], rows[k].step_log2, positions[k]) for k in spec.keys}
    if not best:
        state.note += " (every value diverged)"
    return state


def _replay_reused(spec: CellSpec, source: CellState, ids_for: IdsFor, result_of: ResultOf) -> CellState:
    if not source.finished or not source.setting:
        return CellState(spec, WAITING, note=f"waits for the winner of {source.spec.label}")
    provenance = _provenance(spec, TUNED, source.round + 1, source.setting, reused_from=source.spec.label)
    state = _planned_setting(spec, source.setting, provenance, source.round + 1, ids_for, result_of)
    state.note = f"the winner of {source.spec.label} ({source.status})"
    return state


def _replay_predicted(spec: CellSpec, tuned: list[CellState], laws: dict[tuple[str, str], HyperparameterLaw],
                      ids_for: IdsFor, result_of: ResultOf) -> CellState:
    waiting = [c.spec.label for c in tuned if not c.finished]
    if waiting:
        return CellState(spec, WAITING, note=f"waits for {len(waiting)} tuned cell(s) of {spec.group} to finish")
    setting, predicted = {}, {}
    for key in spec.keys:
        law = laws.get((spec.group, key))
        if law is None or not law.terms:
            resolved = sum(1 for c in tuned if _law_cell(c, key) is not None)
            return CellState(spec, BLOCKED, note=f"no {key} law for {spec.group}: {resolved} resolved tuned cell(s), "
                                                 "not enough to fit it; tune more sizes or budgets")
        value = float(f"{law.predict(spec.N, spec.D):.{PREDICTION_DIGITS}g}")
        low, high = law.interval(spec.N, spec.D)
        setting[key] = value
        predicted[key] = {"value": value, "low": _finite_or_none(low), "high": _finite_or_none(high),
                          "level": law.level, **{name: law.coef[name] for name in ("c", "a", "b")},
                          "n_cells": len(law.cells)}
    round_ = 1 + max((c.round for c in tuned), default=0)
    state = _planned_setting(spec, setting, _provenance(spec, PREDICTED, round_, setting, predicted=predicted),
                             round_, ids_for, result_of)
    state.predicted = predicted
    state.note = "predicted by the " + ", ".join(f"{k} law" for k in spec.keys)
    return state


def _planned_setting(spec: CellSpec, setting: dict, provenance: dict, round_: int, ids_for: IdsFor,
                     result_of: ResultOf) -> CellState:
    """A cell that trains one setting (reused, predicted or fixed): planned until its runs finish."""
    state = CellState(spec, PLANNED, round=round_, setting=dict(setting))
    ids = ids_for(spec, setting, provenance)
    if ids is None:
        state.unplanned = 1
        state.note = "not planned yet: launch the sweep to plan it"
        return state
    state.winner_run_ids = ids
    loss, _ = _setting_loss(ids, result_of)
    if loss is None:
        state.pending = [r for r in ids if not _finished(result_of(r))]
    else:
        state.status, state.winner_loss = DONE, loss
    return state


def _finished(result: RunResult | None) -> bool:
    return result is not None and result.status in records.FINISHED and (
        result.status == records.DIVERGED or result.loss is not None)


def _setting_loss(run_ids: list[str], result_of: ResultOf) -> tuple[float | None, list[float]]:
    """Mean loss over the seeds (inf if one diverged), or None while a seed is unfinished."""
    losses = []
    for run_id in run_ids:
        result = result_of(run_id)
        if not _finished(result):
            return None, []
        losses.append(math.inf if result.status == records.DIVERGED else float(result.loss))
    return sum(losses) / len(losses), losses


def seed_noise(seed_losses: list[list[float]]) -> float:
    """Pooled standard deviation between seeds of one setting (settings with >= 2 finite seeds); 0 without any."""
    sums, dof = 0.0, 0
    for losses in seed_losses:
        finite = [x for x in losses if math.isfinite(x)]
        if len(finite) >= 2:
            mean = sum(finite) / len(finite)
            sums += sum((x - mean) ** 2 for x in finite)
            dof += len(finite) - 1
    return math.sqrt(sums / dof) if dof else 0.0


def _provenance(spec: CellSpec, source: str, round_: int | None = None, values: dict | None = None, *,
                coordinate: str | None = None, positions: dict | None = None, reused_from: str | None = None,
                predicted: dict | None = None) -> dict:
    """The point's ``tuning`` section (optlaw.config.tuning.TuningSourceConfig) as a plain dict."""
    return {"source": source if source != REUSED else TUNED, "cell": spec.label, "round": round_,
            "coordinate": coordinate, "values": dict(values or {}), "positions": dict(positions or {}),
            "reused_from": reused_from, "predicted": dict(predicted or {})}


def _values_text(walk: CoordinateState, positions: list[int]) -> str:
    return ", ".join(f"{walk.values[p]:.4g}" for p in sorted(positions) if p in walk.values)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ----- hyperparameter laws from tuned cells ------------------------------------------------------

def _law_cell(state: CellState, key: str) -> LawCell | None:
    """The cell's optimum of ``key`` for a law: only a resolved walk gives a minimum worth fitting."""
    walk = state.final_coordinate(key)
    if walk is None or walk.verdict is None or not walk.verdict.resolved:
        return None
    values, losses = walk.curve()
    return LawCell(N=float(state.spec.N), D=float(state.spec.D), value=curve_minimum(values, losses).value,
                   cell=state.spec.label)


def fit_laws(tuned: list[CellState], bootstrap: int = 1000, seed: int = 0,
             only_finished_groups: bool = False) -> dict[tuple[str, str], HyperparameterLaw]:
    """Per (group, key): the law ``log h* = c + a log N + b log D`` over the resolved tuned cells.

    ``only_finished_groups``: skip a group while one of its tuned cells is still tuning (the
    planner predicts from the whole group, never from part of it).
    """
    groups: dict[str, list[CellState]] = {}
    for state in tuned:
        if state.spec.N is not None and state.spec.D is not None:
            groups.setdefault(state.spec.group, []).append(state)
    laws = {}
    for group, members in groups.items():
        if only_finished_groups and not all(m.finished for m in members):
            continue
        for key in dict.fromkeys(k for m in members for k in m.spec.keys):
            law_cells = [c for c in (_law_cell(m, key) for m in members) if c is not None]
            if law_cells:
                laws[(group, key)] = fit_law(law_cells, key, group, bootstrap=bootstrap, seed=seed)
    return laws


# ----- the planner: cells of a sweep, and the points of every round so far ------------------------

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
        budgets = [axes.get(budget_axis) for axes, _ in by_cell.values()] if budget_axis else []
        tuned_budget = None
        if budgets:
            tuned_budget = max(budgets) if self.tuning.tune_budget == TuneBudget.largest else min(budgets)
        cells = []
        for cell_axes, seeds in by_cell.values():
            keys = [row.key for row in self.tuning.hyperparameters
                    if row.optimizers is None or cell_axes.get("optimizer") in row.optimizers]
            base = self._point(cell_axes, seeds[0], {})
            label = cell_label(cell_axes)
            group_axes = {k: v for k, v in cell_axes.items() if k not in SIZE_KEYS and k != budget_axis}
            spec = CellSpec(label=label, axes=cell_axes, seeds=seeds, role=FIXED, keys=keys,
                            starts={row.key: self._start(row, base, label) for row in self.tuning.hyperparameters
                                    if row.key in keys},
                            N=float(base.plan.n_basis) if base.plan else None, D=base.tokens,
                            group=cell_label(group_axes))
            if keys:
                spec.role = self._role(cell_axes, budget_axis, tuned_budget)
                if spec.role == REUSED:
                    source_axes = {**cell_axes, budget_axis: tuned_budget}
                    spec.source = cell_label(source_axes)
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
                self._composed[key] = make_point(self.sweep.name, axes, self.fixed, self.naming)
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
        return RunResult.of_record(records.read_record(self.sweep_dir / "runs" / run_id))

    # -- budget branching over the points planned so far --
    def _plan_branches(self, points: list[GridPoint]) -> None:
        """A longest-budget point keeps a checkpoint at every shorter budget's decay start (the winner is not
        known when it trains); a shorter point branches off the longest planned point with its other axes,
        unless that one already finished without the checkpoint (then it trains from scratch)."""
        from optlaw.train.checkpoint import keep_path

        key = next(iter(budget_keys(self.sweep)))
        budgets = sorted(dict(axes_of(self.sweep))[key])
        groups: dict[tuple, list[GridPoint]] = {}
        for point in points:
            groups.setdefault(tuple((k, repr(v)) for k, v in point.axes.items() if k != key), []).append(point)
        for group in groups.values():
            trunk = max(group, key=lambda p: p.tokens or 0)
            if trunk.axes[key] != budgets[-1]:
                continue  # only a longest-budget point is sure to keep every checkpoint from its start
            keeps = {_decay_start_tokens(trunk, key, b) for b in budgets[:-1]}
            for point in group:
                if point is trunk:
                    continue
                start = point.plan.tokens_at(point.plan.decay_start_step)
                trunk_done = _finished(self._result(trunk.run_id))
                if trunk_done and not keep_path((self.sweep_dir / "runs" / trunk.run_id).resolve(), start).exists():
                    continue  # the trunk trained without this checkpoint: train the point from scratch
                keeps.add(start)
                point.extra["branch_from"] = {"run_id": trunk.run_id, "tokens": start}
            if keeps:
                trunk.overrides.append(f"checkpoint.keep_at_tokens={format_override_value(sorted(keeps))}")
                trunk.extra["branch_trunk"] = True


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


# ----- reading a sweep directory (status, the fitting stage) ---------------------------------------

def read_tuning(sweep_dir: str | Path) -> TuningState | None:
    """The tuning state of a sweep directory from its manifest and records; None for a sweep without tuning.

    Composes nothing (no torch import): the points are looked up in the manifest, so a round the
    last launch did not plan yet shows as "not planned yet". This is the interface for
    ``optlaw status`` and for the fitting stage (docs/sweeps.md, "Reading a tuning sweep").
    """
    from optlaw.sweep.manifest import read_manifest

    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    section = manifest.get("tuning")
    if not section:
        return None
    tuning = as_config(TuningConfig, manifest["definition"]["tuning"], "tuning")
    cells = [CellSpec.from_json(c) for c in section["cells"]]
    by_cell: dict[str, list[dict]] = {}
    for point in manifest["points"]:
        if point.get("tuning"):
            by_cell.setdefault(point["tuning"]["cell"], []).append(point)

    def ids_for(spec: CellSpec, values: dict, provenance: dict) -> list[str] | None:
        matches = [p for p in by_cell.get(spec.label, []) if _same_setting(p, values, provenance)]
        ids = []
        for seed in spec.seeds:
            found = [p for p in matches if seed is None or p["axes"].get("seed") == seed]
            if not found:
                return None
            ids.append(found[0]["run_id"])
        return ids

    def result_of(run_id: str) -> RunResult | None:
        return RunResult.of_record(records.read_record(sweep_dir / "runs" / run_id))

    return replay(tuning, cells, ids_for, result_of)


def _same_setting(point: dict, values: dict, provenance: dict) -> bool:
    if provenance["source"] == PREDICTED:  # its value comes from a refit: match the cell's predicted point
        return point["tuning"].get("source") == PREDICTED
    axes = point.get("axes", {})
    return all(k in axes and math.isclose(float(axes[k]), float(v), rel_tol=1e-12) for k, v in values.items()) and (
        bool(values) or point["tuning"].get("source") == FIXED)
