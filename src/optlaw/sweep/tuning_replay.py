"""Replaying a tuning sweep: every cell from its first round, on the results at hand.

Nothing about a tuning sweep's state is stored. Every plan (and every reader) replays each
cell from its first round, reading the losses of finished records: a round whose points are
all finished yields the next round (optlaw.sweep.bracket decides it); the first round with an
unfinished point is the cell's current round. Results only accumulate, so a replay never
contradicts an earlier one: relaunching continues where a launch stopped, and killing a
launch loses nothing but the points it was training (which resume from their checkpoints).
The noise threshold of each decision is computed from the settings finished before it, in
replay order, for the same reason.

Each tuned cell walks its keys by coordinate descent (``tuning.hyperparameters`` in order, for
``tuning.passes`` passes). A reused cell (scope per_size) trains its tuned cell's winner once
that cell is finished; a predicted cell (scope transfer) trains the law's value once every
tuned cell of its group is finished; a fixed cell trains its configured values.

``replay`` takes how to find a setting's runs as a function: the planner (optlaw.sweep.tuning)
composes them, ``read_tuning`` looks them up in the manifest (no compose, no torch).
"""

from __future__ import annotations

import math
from pathlib import Path

from optlaw import records
from optlaw.config import as_config
from optlaw.config.tuning import TunedHyperparameterConfig, TuningConfig
from optlaw.sweep.bracket import BracketRule, decide
from optlaw.sweep.hparam_law import HyperparameterLaw
from optlaw.sweep.tuning_state import (BLOCKED, DONE, FIXED, PLANNED, PREDICTED, RESOLVED, REUSED, TUNED, TUNING,
                                       UNRESOLVED, WAITING, CellSpec, CellState, CoordinateState, IdsFor, ResultOf,
                                       RunResult, TuningState, finite_or_none, fit_laws, is_finished, law_cell,
                                       seed_noise, setting_loss, value_at)

# Significant digits of a predicted value: the run id hashes it, so it must not move with the
# last bits of a least-squares solve on another machine; 4 digits are far below the law's error.
PREDICTION_DIGITS = 4

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
                    only_finished_groups=True, terms=tuning.law_terms)
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
                    loss, seed_losses = setting_loss(ids, result_of)
                    if loss is None:
                        unfinished += [r for r in ids if not is_finished(result_of(r))]
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
            resolved = sum(1 for c in tuned if law_cell(c, key) is not None)
            return CellState(spec, BLOCKED, note=f"no {key} law for {spec.group}: {resolved} resolved tuned cell(s), "
                                                 "not enough to fit it; tune more sizes or budgets")
        at_D = spec.predict_D or spec.D
        value = float(f"{law.predict(spec.N, at_D):.{PREDICTION_DIGITS}g}")
        low, high = law.interval(spec.N, at_D)
        setting[key] = value
        predicted[key] = {"value": value, "low": finite_or_none(low), "high": finite_or_none(high),
                          "level": law.level, **{name: law.coef[name] for name in ("c", "a", "b")},
                          "n_cells": len(law.cells), "at_D": at_D}
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
    loss, _ = setting_loss(ids, result_of)
    if loss is None:
        state.pending = [r for r in ids if not is_finished(result_of(r))]
    else:
        state.status, state.winner_loss = DONE, loss
    return state


def _provenance(spec: CellSpec, source: str, round_: int | None = None, values: dict | None = None, *,
                coordinate: str | None = None, positions: dict | None = None, reused_from: str | None = None,
                predicted: dict | None = None) -> dict:
    """The point's ``tuning`` section (optlaw.config.tuning.TuningSourceConfig) as a plain dict."""
    return {"source": source if source != REUSED else TUNED, "cell": spec.label, "round": round_,
            "coordinate": coordinate, "values": dict(values or {}), "positions": dict(positions or {}),
            "reused_from": reused_from, "predicted": dict(predicted or {})}


def _values_text(walk: CoordinateState, positions: list[int]) -> str:
    return ", ".join(f"{walk.values[p]:.4g}" for p in sorted(positions) if p in walk.values)


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
