"""The state of a tuning sweep: cells, the walk along each tuned key, and the laws fitted to them.

Built by optlaw.sweep.tuning_replay (which replays every cell from the records); read by
``optlaw status`` and by the fitting stage, through ``tuning_replay.read_tuning(sweep_dir)``.
Vocabulary: a *cell* is one point of the grid without its seeds (model x budget x optimizer x
any other axis); a *setting* is one value of every tuned key, trained once per seed, whose loss
is the mean final validation loss over the seeds (a diverged seed makes it infinite); a
*walk* is one pass along one key (``CoordinateState``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from optlaw import records
from optlaw.sweep.bracket import Verdict
from optlaw.sweep.hparam_law import HyperparameterLaw, LawCell, curve_minimum, fit_law

TUNED, REUSED, PREDICTED, FIXED = "tuned", "reused", "predicted", "fixed"
# Cell states: a tuned cell is tuning until its verdict, then resolved or unresolved; a reused or
# predicted cell waits for its source, then is planned; every cell is done once its points are.
TUNING, RESOLVED, UNRESOLVED, WAITING, PLANNED, DONE, BLOCKED = (
    "tuning", "resolved", "unresolved", "waiting", "planned", "done", "blocked")


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
    def of_record(cls, record: records.RunRecord | None) -> RunResult | None:
        if record is None:
            return None
        loss = record.final_val_loss
        return cls(str(record.status), float(loss) if loss is not None else None)


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
    predict_D: float | None = None    # predicted: the D the law is evaluated at (with budget branching the
                                      # size's longest budget, so all its budgets share one trunk); None: D

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> CellSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})  # older manifests lack later fields


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
            "points": [{"position": p / 2, "value": self.values[p], "loss": finite_or_none(self.losses.get(p)),
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
            "winner_loss": finite_or_none(self.winner_loss), "resolved": self.resolved, "at_edge": self.at_edge,
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


def is_finished(result: RunResult | None) -> bool:
    return result is not None and result.status in records.FINISHED and (
        result.status == records.DIVERGED or result.loss is not None)


def setting_loss(run_ids: list[str], result_of: ResultOf) -> tuple[float | None, list[float]]:
    """Mean loss over the seeds (inf if one diverged), or None while a seed is unfinished."""
    losses = []
    for run_id in run_ids:
        result = result_of(run_id)
        if not is_finished(result):
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





def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ----- hyperparameter laws from tuned cells ------------------------------------------------------

def law_cell(state: CellState, key: str) -> LawCell | None:
    """The cell's optimum of ``key`` for a law: only a resolved walk gives a minimum worth fitting."""
    walk = state.final_coordinate(key)
    if walk is None or walk.verdict is None or not walk.verdict.resolved:
        return None
    values, losses = walk.curve()
    return LawCell(N=float(state.spec.N), D=float(state.spec.D), value=curve_minimum(values, losses).value,
                   cell=state.spec.label)


def fit_laws(tuned: list[CellState], bootstrap: int = 1000, seed: int = 0,
             only_finished_groups: bool = False, terms: list[str] | None = None) -> dict[tuple[str, str], HyperparameterLaw]:
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
            law_cells = [c for c in (law_cell(m, key) for m in members) if c is not None]
            if law_cells:
                laws[(group, key)] = _fit_law_once(tuple(law_cells), key, group, bootstrap, seed,
                                                   None if terms is None else tuple(terms))
    return laws


# Fitted laws by their inputs: a launch replans whenever a point ends, and a law's bootstrap (1000
# least-squares fits) would be redone each time for cells whose optima have not moved.
@lru_cache(maxsize=256)
def _fit_law_once(cells: tuple[LawCell, ...], key: str, group: str, bootstrap: int, seed: int,
                  terms: tuple[str, ...] | None) -> HyperparameterLaw:
    return fit_law(list(cells), key, group, bootstrap=bootstrap, seed=seed,
                   allowed_terms=None if terms is None else list(terms))


