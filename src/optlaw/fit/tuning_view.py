"""What the fitting stage reads from tuning sweeps: winners, curves, laws, sensitivity, rules.

A tuning sweep (docs/sweeps.md, "Tuning") stores no state: its cells are replayed from the
manifest and the records (``optlaw.sweep.tuning_replay.read_tuning``). The fit table is built
from run directories, ``<sweep dir>/runs/<run id>``; every sweep directory among their
parents that holds a tuning manifest is replayed here, and the fit then

- keeps, for each cell, the run(s) the tuning protocol chose (``winners``), not merely the
  lowest loss of whatever settings happen to be on disk;
- reports each tuned cell's loss-against-value curve with its interpolated minimum and verdict,
  the hyperparameter laws ``log h* = c + a log N + b log D`` with their intervals, each
  optimizer's sensitivity (how wide the range of values within 1% of the best loss is) and the
  cells left unresolved;
- records the width-scaling rule and weight-decay rule each optimizer ran with
  (``optimizer.scaling`` of its records' configs), because rho depends on them.

Records read from W&B carry their ``tuning`` section but no manifest: their fit keeps the
lowest-loss setting per cell (as for any sweep) and reports no protocol (``protocol_sources`` empty).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optlaw.errors import UserError
from optlaw.sweep.hparam_law import CurveMinimum, curve_minimum
from optlaw.sweep.manifest import manifest_path
from optlaw.sweep.tuning_replay import read_tuning
from optlaw.sweep.tuning_state import CellState, TuningState

SENSITIVITY_WITHIN = 0.01   # the measure: values whose loss is within 1% of the cell's best
LR_KEY = "optimizer.lr_mult"
SCALING_KEYS = ("lr_rule", "wd_rule", "base_width", "lr_groups")


@dataclass
class TuningView:
    """The tuning sweeps behind one fit table, replayed; empty when the table has none."""

    states: dict[str, TuningState] = field(default_factory=dict)      # sweep dir -> its replayed state
    scaling_rules: dict[str, list[dict]] = field(default_factory=dict)  # optimizer -> distinct scaling sections

    @property
    def cells(self) -> list[CellState]:
        return [cell for state in self.states.values() for cell in state.cells]

    def winners(self) -> dict[str, set[str]]:
        """Cell label -> the run ids (one per seed) that stand for the cell in the fit."""
        return {label: set(ids) for state in self.states.values() for label, ids in state.winners().items()}

    def notes(self) -> list[str]:
        """Warnings for the fit: tuned cells the protocol left unresolved or unfinished."""
        out = []
        for cell in self.cells:
            if cell.spec.role == "tuned" and not cell.resolved:
                why = "still tuning" if not cell.finished else ("best at the edge of its bracket" if cell.at_edge
                                                                else "neighbours within the noise")
                out.append(f"tuning cell {cell.spec.label} is unresolved ({why}): its rho and law point are "
                           "less certain; raise the key's max_extensions in tuning.hyperparameters or relaunch the sweep")
        return out

    def to_json(self) -> dict:
        """fit.json's tuning sections (each present, possibly empty, so readers need no key checks)."""
        cells = [cell_entry(c) for c in self.cells]
        return {
            "tuning_protocol": {"sources": sorted(self.states), "complete": all(s.complete for s in self.states.values()),
                                "cells": cells},
            "hyperparameter_laws": laws_by_optimizer(self.states.values()),
            "tuning_sensitivity": sensitivity_by_optimizer(cells),
            "unresolved_cells": [c["cell"] for c in cells if c["role"] == "tuned" and not c["resolved"]],
            "scaling_rules": {opt: rules for opt, rules in sorted(self.scaling_rules.items())},
        }


def read_view(found: Iterable[tuple[str, Mapping[str, Any]]]) -> TuningView:
    """The view of the tuning sweeps whose run directories are among ``found`` ((location, record) pairs)."""
    view = TuningView()
    sweep_dirs = set()
    for location, doc in found:
        if not isinstance(doc, Mapping):
            continue
        _note_rules(view.scaling_rules, doc)
        if isinstance(doc.get("tuning"), Mapping) and not str(location).startswith("wandb:"):
            sweep_dirs.add(Path(location).parent.parent)   # <sweep dir>/runs/<run id>
    for sweep_dir in sorted(sweep_dirs):
        if not manifest_path(sweep_dir).is_file():
            continue
        try:
            state = read_tuning(sweep_dir)
        except (UserError, KeyError, ValueError) as exc:  # a manifest of another optlaw: fit without its protocol
            raise UserError(f"{sweep_dir}: cannot replay its tuning ({exc}); fit the runs of a sweep this optlaw wrote") from None
        if state is not None:
            view.states[str(sweep_dir)] = state
    return view


def _note_rules(rules: dict[str, list[dict]], doc: Mapping[str, Any]) -> None:
    optimizer = (doc.get("config") or {}).get("optimizer") if isinstance(doc.get("config"), Mapping) else None
    scaling = optimizer.get("scaling") if isinstance(optimizer, Mapping) else None
    if not isinstance(scaling, Mapping) or doc.get("optimizer") is None:
        return
    rule = {k: scaling.get(k) for k in SCALING_KEYS}
    known = rules.setdefault(str(doc["optimizer"]), [])
    if rule not in known:
        known.append(rule)


# ----- one cell --------------------------------------------------------------------------------

def cell_entry(cell: CellState) -> dict:
    """A cell's protocol entry: its role, verdict, winner and, per tuned key, curve, minimum and sensitivity."""
    entry = {
        "cell": cell.spec.label, "optimizer": cell.spec.axes.get("optimizer"), "group": cell.spec.group,
        "N": cell.spec.N, "D": cell.spec.D, "role": cell.spec.role, "status": cell.status,
        "resolved": cell.resolved, "at_edge": cell.at_edge, "round": cell.round, "setting": dict(cell.setting),
        "winner_run_ids": list(cell.winner_run_ids), "winner_loss": _finite(cell.winner_loss),
        "reused_from": cell.spec.source, "predicted": cell.predicted, "note": cell.note, "curves": {},
    }
    for key in cell.spec.keys:
        walk = cell.final_coordinate(key)
        if walk is None:
            continue
        values, losses = walk.curve()
        curve: dict[str, Any] = {"values": values, "losses": [_finite(x) for x in losses],
                                 "bracket": list(walk.bracket_values() or []) or None,
                                 "resolved": bool(walk.verdict and walk.verdict.resolved),
                                 "at_edge": bool(walk.verdict and walk.verdict.at_edge), "minimum": None,
                                 "sensitivity": None}
        if any(math.isfinite(x) for x in losses):
            minimum = curve_minimum(values, losses)
            curve["minimum"] = minimum.to_json()
            curve["sensitivity"] = sensitivity(values, losses, minimum)
        entry["curves"][key] = curve
    return entry


def sensitivity(values: list[float], losses: list[float], minimum: CurveMinimum,
                within: float = SENSITIVITY_WITHIN) -> dict:
    """The range of values whose loss is within ``within`` (relative) of the best loss.

    With an interpolated minimum the range is the parabola's (the one in log value through the best
    point and its neighbours, which gave the minimum): a factor-2 grid is too coarse to read a band of
    about one octave off the points themselves. Without one (the best at an edge, a diverged
    neighbour) it is read off the points, linear in log2(value) between them. ``width_log2`` is the
    width in octaves (factors of 2); a side that reaches past the values tried is ``censored`` (the
    width there is extrapolated by the parabola, or, read off the points, a lower bound).
    """
    tried = sorted(math.log2(v) for v in values if v > 0)
    best = min(minimum.loss, min(losses))
    limit = best + within * abs(best)
    if minimum.interpolated and minimum.curvature:
        half = math.sqrt((limit - minimum.loss) / minimum.curvature) / math.log(2)
        low, high = math.log2(minimum.value) - half, math.log2(minimum.value) + half
        censored = [side for side, out in (("low", low < tried[0]), ("high", high > tried[-1])) if out]
        return {"within": within, "low": 2 ** low, "high": 2 ** high, "width_log2": high - low, "censored": censored,
                "method": "parabola"}
    points = sorted((math.log2(v), loss) for v, loss in zip(values, losses) if v > 0)
    inside = [i for i, (_, loss) in enumerate(points) if math.isfinite(loss) and loss <= limit]
    lo_i, hi_i = min(inside), max(inside)   # the best point itself is always inside
    censored = []
    low = points[lo_i][0]
    if lo_i == 0:
        censored.append("low")
    else:
        low = _crossing(points[lo_i - 1], points[lo_i], limit)
    high = points[hi_i][0]
    if hi_i == len(points) - 1:
        censored.append("high")
    else:
        high = _crossing(points[hi_i], points[hi_i + 1], limit)
    return {"within": within, "low": 2 ** low, "high": 2 ** high, "width_log2": high - low, "censored": censored,
            "method": "points"}


def _crossing(a: tuple[float, float], b: tuple[float, float], limit: float) -> float:
    """Where the segment from a (x, loss) to b crosses ``limit``; a diverged end crosses at the finite point."""
    (xa, ya), (xb, yb) = a, b
    if not (math.isfinite(ya) and math.isfinite(yb)) or ya == yb:
        return xa if math.isfinite(ya) and ya <= limit else xb
    return xa + (limit - ya) * (xb - xa) / (yb - ya)


# ----- across cells ----------------------------------------------------------------------------

def laws_by_optimizer(states: Iterable[TuningState]) -> dict[str, list[dict]]:
    """Per law group (the optimizer, plus any other axis): each tuned key's law, coefficients, intervals, cells."""
    out: dict[str, list[dict]] = {}
    for state in states:
        for (group, _key), law in sorted(state.laws.items()):
            out.setdefault(group, []).append(law.to_json() | {"summary": law.summary()})
    return out


def sensitivity_by_optimizer(cells: list[dict], key: str = LR_KEY) -> dict[str, dict]:
    """Per optimizer: the width (octaves) within 1% of the best loss, over its resolved tuned cells."""
    widths: dict[str, list[tuple[str, dict]]] = {}
    for cell in cells:
        curve = cell["curves"].get(key)
        if cell["role"] != "tuned" or not cell["resolved"] or not curve or not curve["sensitivity"]:
            continue
        if curve["sensitivity"]["width_log2"] is not None:
            widths.setdefault(str(cell["optimizer"]), []).append((cell["cell"], curve["sensitivity"]))
    out = {}
    for opt, rows in sorted(widths.items()):
        values = sorted(s["width_log2"] for _, s in rows)
        middle = len(values) // 2
        median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
        out[opt] = {"key": key, "within": SENSITIVITY_WITHIN, "median_width_log2": median,
                    "min_width_log2": values[0], "max_width_log2": values[-1], "n_cells": len(rows),
                    "censored_cells": [c for c, s in rows if s["censored"]],
                    "cells": {c: s for c, s in rows}}
    return out


def protocol_setting(settings: Mapping[str, list[dict]], winners: Mapping[str, set[str]]) -> str | None:
    """The key of ``settings`` (setting -> its runs, each with ``run_id`` and ``tuning_cell``) whose runs are the
    tuning protocol's winner of their cell; None when the cell is no tuning cell or its winner is not among them."""
    for setting, runs in settings.items():
        labels = {r.get("tuning_cell") for r in runs}
        if len(labels) == 1 and (label := labels.pop()) in winners and {r["run_id"] for r in runs} <= winners[label]:
            return setting
    return None


def merge_cell_entries(table_entries: list[dict], protocol: dict) -> list[dict]:
    """fit.json's per-cell ``tuning`` entries: the table's (with ``at_edge`` as before), each joined to its
    protocol entry under ``protocol``, plus the protocol's single-setting cells (reused, predicted, fixed)."""
    by_label = {c["cell"]: c for c in protocol.get("cells", [])}
    out, seen = [], set()
    for entry in table_entries:
        label = entry.get("tuning_cell")
        out.append(dict(entry) | {"protocol": by_label.get(label)})
        seen.add(label)
    for label, cell in by_label.items():
        if label not in seen and cell["winner_run_ids"]:
            out.append({"optimizer": cell["optimizer"], "N": cell["N"], "D": cell["D"], "winner": cell["setting"],
                        "winner_loss": cell["winner_loss"], "swept": {}, "at_edge": [], "points": [],
                        "tuning_cell": label, "protocol": cell})
    return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def fit_sections(table_entries: list[dict], protocol: dict) -> dict:
    """fit.json's ``tuning`` (per-cell entries) and the protocol's sections; empty ones for a table without tuning sweeps."""
    sections = protocol or TuningView().to_json()
    return {"tuning": merge_cell_entries(table_entries, sections["tuning_protocol"])} | sections


def summary_lines(doc: dict) -> list[str]:
    """What ``optlaw fit`` prints of the tuning sections: each law, the sensitivity, the unresolved cells."""
    out = [law["summary"] for laws in (doc.get("hyperparameter_laws") or {}).values() for law in laws]
    out += [f"{opt} lr sensitivity: {s['median_width_log2']:.2f} octaves within 1% of the best loss (median of "
            f"{s['n_cells']} cells)" for opt, s in (doc.get("tuning_sensitivity") or {}).items()]
    if doc.get("unresolved_cells"):
        out.append(f"unresolved tuning cells: {', '.join(doc['unresolved_cells'])}")
    return out
