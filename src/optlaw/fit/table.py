"""The table a fit reads: one row per training run (optimizer, N, D, loss, ...).

Built from run records under sweep directories (``load_runs``) or from a CSV of
published runs (``load_csv``). Invalid rows are dropped with a warning (a ``FitWarning``
in ``table.warnings``) rather than failing the whole fit; only input that leaves nothing
to fit is an error.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optlaw.errors import UserError
from optlaw.fit.result import FitWarning, WarningKind
from optlaw.fit.tuning_view import protocol_setting, read_view
from optlaw.jsonio import dumps
from optlaw.records import CORRUPT, DONE, CorruptRecord, RecordError, RunRecord, iter_json

REQUIRED_COLUMNS = ("optimizer", "N", "D", "loss")
OPTIONAL_COLUMNS = ("seed", "flops", "step_cost", "family", "wallclock_s")
N_BASES = ("total", "non_embedding")
SEED_MODES = ("all", "mean")


@dataclass
class RunTable:
    """Columns as numpy arrays, one entry per run, plus what was left out and why."""

    optimizer: np.ndarray
    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    seed: np.ndarray
    flops: np.ndarray
    step_cost: np.ndarray
    wallclock_s: np.ndarray
    family: np.ndarray
    step_cost_given: np.ndarray | None = None   # per run: was a step-cost ratio given (else 1 assumed)
    n_basis: str = "as_given"
    source: str = ""
    excluded: list[dict] = field(default_factory=list)
    tuning: list[dict] = field(default_factory=list)
    tuning_protocol: dict = field(default_factory=dict)  # fit.json's tuning-sweep sections (fit.tuning_view)
    seed_noise: dict = field(default_factory=dict)
    warnings: list[FitWarning] = field(default_factory=list)  # what a reader of the fit should know about the data
    sweep_names: list[str] = field(default_factory=list)  # the records' ``sweep`` (the W&B group)

    def __post_init__(self):
        if self.step_cost_given is None:
            self.step_cost_given = np.zeros(len(self.loss), dtype=bool)

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def optimizers(self) -> list[str]:
        return sorted(set(self.optimizer.tolist()))

    def cell_keys(self) -> list[tuple[str, float, float]]:
        return list(zip(self.optimizer.tolist(), self.N.tolist(), self.D.tolist()))

    def n_cells(self, optimizer: str | None = None) -> int:
        keys = self.cell_keys()
        if optimizer is not None:
            keys = [k for k in keys if k[0] == optimizer]
        return len(set(keys))

    def subset(self, mask: np.ndarray) -> "RunTable":
        mask = np.asarray(mask)
        cols = {name: getattr(self, name)[mask] for name in _ARRAY_FIELDS}
        return RunTable(**cols, n_basis=self.n_basis, source=self.source, excluded=list(self.excluded),
                        tuning=list(self.tuning), tuning_protocol=self.tuning_protocol, seed_noise=dict(self.seed_noise), warnings=list(self.warnings),
                        sweep_names=list(self.sweep_names))

    def warn(self, message: str, kind: WarningKind = WarningKind.DATA) -> None:
        self.warnings.append(FitWarning(message=message, kind=kind))

    @classmethod
    def from_columns(cls, optimizer, N, D, loss, seed=None, flops=None, step_cost=None, wallclock_s=None,
                     family=None, **meta) -> "RunTable":
        """Build and validate a table from plain sequences (see ``validate``)."""
        n = len(loss)
        given = np.zeros(n, dtype=bool) if step_cost is None else np.isfinite(_as_float(step_cost))
        table = cls(
            optimizer=np.asarray([str(o) for o in optimizer], dtype=object),
            N=_as_float(N), D=_as_float(D), loss=_as_float(loss),
            seed=np.zeros(n, dtype=int) if seed is None else np.asarray(
                [0 if _missing(s) else int(float(s)) for s in seed], dtype=int),
            flops=np.full(n, np.nan) if flops is None else _as_float(flops),
            step_cost=np.ones(n) if step_cost is None else np.where(np.isnan(_as_float(step_cost)), 1.0,
                                                                     _as_float(step_cost)),
            wallclock_s=np.full(n, np.nan) if wallclock_s is None else _as_float(wallclock_s),
            family=np.asarray(["" if _missing(f) else str(f) for f in (family or [""] * n)], dtype=object),
            step_cost_given=given, **meta,
        )
        if not (len(table.optimizer) == len(table.N) == len(table.D) == n):
            raise UserError("columns optimizer, N, D, loss have different lengths; give one value per run")
        return table.validate()

    def validate(self) -> "RunTable":
        """Drop rows with NaN/non-positive N, D or loss and exact duplicate rows, with a warning each."""
        bad = ~(np.isfinite(self.N) & np.isfinite(self.D) & np.isfinite(self.loss)
                & (self.N > 0) & (self.D > 0) & (self.loss > 0))
        table = self
        if bad.any():
            rows = np.flatnonzero(bad)
            shown = ", ".join(str(int(r)) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
            table.warn(f"dropped {bad.sum()} row(s) with NaN or non-positive N, D or loss (rows {shown}); "
                       "fix or remove them in the input")
            table = table.subset(~bad)
        seen: set = set()
        dup = np.zeros(len(table), dtype=bool)
        for i, key in enumerate(zip(table.optimizer, table.N, table.D, table.seed, table.loss)):
            dup[i] = key in seen
            seen.add(key)
        if dup.any():
            table.warn(f"dropped {dup.sum()} duplicate row(s) (same optimizer, N, D, seed and loss); "
                       "each run should appear once")
            table = table.subset(~dup)
        if len(table) == 0:
            raise UserError("no valid rows left to fit (all rows had NaN/non-positive N, D or loss); check the input")
        return table


_ARRAY_FIELDS = ("optimizer", "N", "D", "loss", "seed", "flops", "step_cost", "wallclock_s", "family",
                 "step_cost_given")


def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _as_float(values) -> np.ndarray:
    out = np.empty(len(values))
    for i, v in enumerate(values):
        try:
            out[i] = float(v) if not _missing(v) else np.nan
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


# ----------------------------------------------------------------------------- CSV

def load_csv(path: str | os.PathLike, columns: dict[str, str] | None = None,
             default_optimizer: str | None = None, n_basis: str = "as_given", tuning_column: str | None = None,
             seed_column: str | None = None) -> RunTable:
    """A table from a CSV with columns ``optimizer,N,D,loss`` (+ optional ``seed,flops,step_cost,family``).

    ``columns`` maps our names to the CSV's (e.g. ``{"N": "N_nonembed", "loss": "loss_c4_en"}``).
    When the CSV has no D but has flops, D = flops / (6 N) (Hoffmann et al. 2022's C = 6ND).
    ``default_optimizer`` names the optimizer of a CSV without an optimizer column.

    Several rows per cell (optimizer, N, D) must be declared: ``seed_column`` (a column named
    ``seed`` counts as one) makes them seeds; ``tuning_column`` makes them settings of a swept
    hyperparameter, of which each cell keeps the best (lowest mean loss over seeds), recorded in
    ``table.tuning`` with a warning when the winner sits at the edge of the swept values, as for
    run records. Undeclared repeats are an error: fitting them as seeds silently moved (Mis)Fitting's
    exponents (alpha 0.224 against 0.138 after the minimum over learning rates).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CSV file {str(path)!r} not found; pass an existing file to --csv")
    mapping = dict(columns or {})
    if seed_column is not None:
        mapping["seed"] = seed_column
    unknown = set(mapping) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS)
    if unknown:
        raise UserError(f"unknown column name(s) {sorted(unknown)} in the column mapping; "
                        f"map one of {list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        rows = list(reader)

    def column(name: str) -> list | None:
        source = mapping.get(name, name)
        if source not in header:
            if name in mapping:
                flag = "--seed-column" if name == "seed" and seed_column is not None else f"--column {name}=..."
                raise UserError(f"column {source!r} ({flag}) not in {path.name}; columns are: {', '.join(header)}")
            return None
        return [row[source] for row in rows]

    if tuning_column is not None and tuning_column not in header:
        raise UserError(f"--tuning-column {tuning_column!r} is not a column of {path.name}; columns are: "
                        f"{', '.join(header)}")
    data = {name: column(name) for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    notes = []
    if data["optimizer"] is None and default_optimizer:
        data["optimizer"] = [default_optimizer] * len(rows)
    if data["D"] is None and data["flops"] is not None and data["N"] is not None:
        data["D"] = list(_as_float(data["flops"]) / (6.0 * _as_float(data["N"])))
        notes.append(FitWarning(message="D derived from flops as D = flops / (6 N)"))
    missing = [name for name in REQUIRED_COLUMNS if data[name] is None]
    if missing:
        raise UserError(f"{path.name} lacks column(s) {', '.join(missing)} (columns: {', '.join(header)}); "
                        "rename them or map them, e.g. --column N=N_nonembed"
                        + ("; or give --default-optimizer NAME" if "optimizer" in missing else ""))
    tuning: list[dict] = []
    if tuning_column is not None:
        data, tuning, edge_notes = _best_rows_per_cell(data, [row[tuning_column] for row in rows], tuning_column)
        notes += [FitWarning(message=n) for n in edge_notes]
    else:
        _check_one_row_per_cell(data, path.name)
    table = RunTable.from_columns(
        data["optimizer"], data["N"], data["D"], data["loss"], seed=data["seed"], flops=data["flops"],
        step_cost=data["step_cost"], wallclock_s=data["wallclock_s"], family=data["family"],
        n_basis=n_basis, source=str(path), warnings=notes, tuning=tuning,
    )
    table.seed_noise = seed_noise(table)
    return table


def _csv_cells(data: dict) -> list[tuple]:
    """(optimizer, N, D, seed) of every CSV row, numbers as floats (rows that do not parse: None)."""
    seeds = data["seed"] if data["seed"] is not None else [None] * len(data["loss"])
    N, D = _as_float(data["N"]), _as_float(data["D"])
    return [(str(o), n, d, None if _missing(s) else str(s)) for o, n, d, s in zip(data["optimizer"], N, D, seeds)]


def _check_one_row_per_cell(data: dict, name: str) -> None:
    counts: dict[tuple, int] = defaultdict(int)
    loss = _as_float(data["loss"])
    seen = set()
    for key, value in zip(_csv_cells(data), loss):
        # rows ``validate`` drops (invalid, or exact duplicates) are not repeats of a cell
        if not (key[1] > 0 and key[2] > 0 and value > 0) or (key, value) in seen:
            continue
        seen.add((key, value))
        counts[key] += 1
    repeated = [(k, c) for k, c in counts.items() if c > 1]
    if repeated:
        (opt, N, D, seed), count = repeated[0]
        where = f"(optimizer {opt}, N={N:.6g}, D={D:.6g}" + (f", seed {seed})" if seed is not None else ")")
        raise UserError(f"{name}: {len(repeated)} cell(s) hold several rows, e.g. {count} rows at {where}; say what "
                        "they are: --tuning-column COL (a swept hyperparameter: keep each cell's best) or "
                        "--seed-column COL (repeated runs: fit each as a seed)")


def _best_rows_per_cell(data: dict, settings: list, column: str) -> tuple[dict, list[dict], list[str]]:
    """Keep each cell's best setting of ``column`` (the CSV form of a tuning sweep), as for run records."""
    runs = []
    for i, (opt, N, D, seed) in enumerate(_csv_cells(data)):
        loss = _as_float([data["loss"][i]])[0]
        if not (np.isfinite(N) and np.isfinite(D) and np.isfinite(loss)):
            continue   # from_columns drops and reports the row; it must not win a cell
        value = _as_float([settings[i]])[0]
        runs.append({"row": i, "optimizer": opt, "N": N, "D": D, "loss": loss, "seed": seed,
                     "hyperparameters": {column: float(value) if np.isfinite(value) else settings[i]}})
    kept, tuning, notes = _best_per_cell(runs)
    rows = sorted(r["row"] for r in kept)
    return {k: (None if v is None else [v[i] for i in rows]) for k, v in data.items()}, tuning, notes


# ----------------------------------------------------------------------------- run records

def load_runs(dirs: list[str | os.PathLike] | str | os.PathLike, n_basis: str = "non_embedding",
              seeds: str = "all") -> RunTable:
    """A table from the ``run.json`` records under one or more sweep directories.

    Only ``done`` runs are fitted; the others are kept in ``table.excluded`` with their
    status and reason. Cells (optimizer, N, D) holding several hyperparameter settings
    (a tuning sweep) keep the best setting (lowest mean loss over seeds); the winner is
    recorded in ``table.tuning`` with a warning when it sits at the edge of the swept range.
    ``seeds``: ``all`` keeps every seed as a row, ``mean`` averages them per cell.
    """
    dirs = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
    for root in dirs:
        if not Path(root).is_dir():
            raise UserError(f"sweep directory {str(root)!r} not found; pass existing directories to --runs")
    found = [(str(run_dir), doc) for root in dirs for run_dir, doc in iter_json(root)]
    return table_from_records(found, n_basis, seeds, source=", ".join(map(str, dirs)))


def load_wandb(path: str, group: str | None = None, n_basis: str = "non_embedding", seeds: str = "all",
               api=None) -> RunTable:
    """A table from runs stored in W&B (``entity/project``), for users whose records live only there.

    optlaw's trainer writes the run record's fit fields (``records.FIT_FIELDS``) into each W&B
    run's summary, so a W&B run reads like a ``run.json``. ``group`` keeps one sweep's runs.
    ``api`` is a ``wandb.Api()`` (tests pass a stand-in).
    """
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else None
    try:
        remote = list(api.runs(path, filters=filters))
    except Exception as exc:  # wandb raises several types for a bad path or no network
        raise UserError(f"cannot list W&B runs of {path!r}: {exc}; check entity/project, login and network") from None
    found = []
    for run in remote:
        rec = dict(run.summary)
        rec.setdefault("run_id", getattr(run, "id", None))
        found.append((f"wandb:{path}/{getattr(run, 'id', '?')}", rec))
    if not found:
        raise UserError(f"no W&B runs in {path!r}" + (f" with group {group!r}" if group else "")
                        + "; check --wandb-runs (entity/project[:group])")
    return table_from_records(found, n_basis, seeds, source=f"wandb:{path}" + (f":{group}" if group else ""))


def mixed_machines(machines: list[dict | None]) -> str:
    """A warning when the runs were trained on more than one machine setting (record ``machine``), else ''.

    Threads, CPU kernels and torch builds change a run's losses by rounding, not its run id:
    on the demo, 2 CPU threads against 1 moved final losses by a median 0.006 nats and up to
    0.08 near the edge of stability (README, "optlaw demo"), which can flip a tuning winner.
    """
    known = [m for m in machines if m]
    kinds = {dumps(m, sort_keys=True) for m in known}
    if len(kinds) < 2:
        return ""
    differing = sorted({k for m in known for k in m if len({dumps(x.get(k), sort_keys=True) for x in known}) > 1})
    counts: dict[str, int] = defaultdict(int)
    for m in known:
        counts[", ".join(f"{k} {m.get(k)}" for k in differing)] += 1
    parts = "; ".join(f"{n} run(s) with {what}" for what, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (f"the fitted runs were trained on {len(kinds)} machine settings ({parts}): their losses differ by "
            "rounding as well as by optimizer, N and D; compare optimizers on runs of one setting "
            "(set cpu_threads, rerun on one machine type) where differences are small")


def table_from_records(found: list[tuple[str, dict | CorruptRecord]], n_basis: str = "non_embedding", seeds: str = "all",
                       source: str = "") -> RunTable:
    """The fit table from (location, record document) pairs: run.json files or W&B summaries alike.

    Each document is read as a typed ``RunRecord`` (older schema versions upgraded); one
    that is not a run record is listed in ``excluded`` with the reason, like a failed run.
    """
    if n_basis not in N_BASES:
        raise UserError(f"n_basis must be one of {N_BASES}, got {n_basis!r}")
    if seeds not in SEED_MODES:
        raise UserError(f"seeds must be one of {SEED_MODES}, got {seeds!r}")
    runs, excluded = [], []
    for location, doc in found:
        if isinstance(doc, CorruptRecord):  # an unreadable run.json: listed by path, never dropped
            excluded.append({"run_id": Path(location).name, "optimizer": None, "N": None,
                             "D": None, "seed": None, "status": CORRUPT, "reason": str(doc), "hyperparameters": {}})
            continue
        try:
            rec = RunRecord.from_json(doc)
        except RecordError as exc:
            excluded.append({"run_id": doc.get("run_id") or Path(location).name, "optimizer": doc.get("optimizer"),
                             "N": None, "D": None, "seed": doc.get("seed"), "status": doc.get("status"),
                             "reason": str(exc), "hyperparameters": {}})
            continue
        entry = {
            "run_id": rec.run_id, "run_dir": str(location),
            "optimizer": rec.optimizer, "N": rec.params(n_basis), "D": rec.D,
            "loss": rec.final_val_loss, "seed": rec.seed, "flops": rec.flops,
            "step_cost": rec.step_cost_ratio, "wallclock_s": rec.wall_time_s,
            "family": rec.family or "", "sweep": rec.sweep,
            "hyperparameters": rec.hyperparameters or {},
            "status": str(rec.status), "reason": rec.reason or "",
            "tuning_cell": (rec.tuning or {}).get("cell"),
            "machine": getattr(rec, "machine", None),  # LLM records only
        }
        if rec.status != DONE:
            excluded.append(_excluded(entry, entry["reason"] or f"status {entry['status']}"))
            continue
        lacking = [k for k in ("optimizer", "N", "D", "loss") if _missing(entry[k])]
        if lacking:
            excluded.append(_excluded(entry, f"record lacks {', '.join(lacking)}"))
            continue
        runs.append(entry)
    if not runs:
        raise UserError(f"no finished ('done') runs with optimizer, N, D and final_val_loss in "
                        f"{source}; run the sweep first or check the source")
    mixed = mixed_machines([r["machine"] for r in runs])  # all done runs: tuning compares them too
    view = read_view(found)  # tuning sweeps among the sources: the protocol picks each cell's run
    runs, tuning, tuning_notes = _best_per_cell(runs, view.winners())
    tuning_notes += view.notes()
    table = RunTable.from_columns(
        [r["optimizer"] for r in runs], [r["N"] for r in runs], [r["D"] for r in runs],
        [r["loss"] for r in runs], seed=[r["seed"] for r in runs], flops=[r["flops"] for r in runs],
        step_cost=[r["step_cost"] for r in runs], wallclock_s=[r["wallclock_s"] for r in runs],
        family=[r["family"] for r in runs], n_basis=n_basis, source=source,
        excluded=excluded, tuning=tuning, tuning_protocol=view.to_json(), sweep_names=sorted({str(r["sweep"]) for r in runs if r["sweep"]}),
    )
    for note in tuning_notes:
        table.warn(note)
    if mixed:
        table.warn(mixed)
    if excluded:
        table.warn(f"{len(excluded)} run(s) not fitted (diverged, failed, running, corrupt or incomplete); "
                   "listed in the report")
    table.seed_noise = seed_noise(table)
    if seeds == "mean":
        table = mean_over_seeds(table)
    return table


def _excluded(entry: dict, reason: str) -> dict:
    return {k: entry[k] for k in ("run_id", "optimizer", "N", "D", "seed", "status")} | {
        "reason": reason, "hyperparameters": entry["hyperparameters"]}


def _hp_key(hp: dict) -> str:
    return dumps(hp, sort_keys=True)


def _best_per_cell(runs: list[dict], winners: dict[str, set[str]] | None = None) -> tuple[list[dict], list[dict], list[str]]:
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        cells[(r["optimizer"], float(r["N"]), float(r["D"]))].append(r)
    kept, tuning, notes = [], [], []
    for (opt, N, D), members in sorted(cells.items()):
        settings: dict[str, list[dict]] = defaultdict(list)
        for r in members:
            settings[_hp_key(r["hyperparameters"])].append(r)
        if len(settings) == 1:
            kept.extend(members)
            continue
        mean_loss = {k: float(np.mean([float(r["loss"]) for r in v])) for k, v in settings.items()}
        best = best_setting(mean_loss, protocol_setting(settings, winners or {}))
        kept.extend(settings[best])
        winner = settings[best][0]["hyperparameters"]
        swept = _swept_values([v[0]["hyperparameters"] for v in settings.values()])
        at_edge = [name for name, values in swept.items()
                   if _is_number(winner.get(name)) and winner[name] in (min(values), max(values))]
        points = [{"hyperparameters": v[0]["hyperparameters"], "loss": mean_loss[k]} for k, v in settings.items()]
        tuning.append({"optimizer": opt, "N": N, "D": D, "winner": winner, "winner_loss": mean_loss[best],
                       "swept": {k: sorted(v) for k, v in swept.items()}, "at_edge": at_edge, "points": points,
                       "tuning_cell": settings[best][0].get("tuning_cell")})
        for name in at_edge:
            notes.append(f"cell ({opt}, N={N:.3g}, D={D:.3g}): best {name}={winner[name]} is at the edge of the "
                         f"swept range {sorted(swept[name])}; the cell is probably under-tuned, widen the sweep")
    return kept, tuning, notes


def best_setting(mean_loss: dict[str, float], protocol: str | None = None) -> str:
    """The winning setting of a cell: the lowest mean loss over its seeds.

    The one place that picks a cell's best run. A cell of a tuning sweep follows its tuning
    protocol instead (``protocol``: the setting ``fit.tuning_view.protocol_setting`` found).
    """
    return protocol if protocol is not None else min(mean_loss, key=mean_loss.get)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _swept_values(settings: list[dict]) -> dict[str, set]:
    """Numeric hyperparameters that take more than one value across a cell's settings."""
    values: dict[str, set] = defaultdict(set)
    for hp in settings:
        for name, value in _flatten(hp).items():
            if _is_number(value):
                values[name].add(value)
    return {k: v for k, v in values.items() if len(v) > 1}


def _flatten(hp: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in hp.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ----------------------------------------------------------------------------- seeds

def seed_noise(table: RunTable) -> dict:
    """Standard deviation of loss between seeds of the same cell, per optimizer (cells with >= 2 seeds)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for key, loss in zip(table.cell_keys(), table.loss.tolist()):
        groups[key].append(loss)
    per_opt: dict[str, list[float]] = defaultdict(list)
    for (opt, _, _), losses in groups.items():
        if len(losses) >= 2:
            per_opt[opt].append(float(np.std(losses, ddof=1)))
    return {opt: {"cells_with_seeds": len(stds), "mean_std": float(np.mean(stds)), "max_std": float(np.max(stds))}
            for opt, stds in sorted(per_opt.items())}


def mean_over_seeds(table: RunTable) -> RunTable:
    """One row per cell, loss averaged over seeds (other numeric columns averaged too)."""
    index: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(table.cell_keys()):
        index[key].append(i)
    rows = [idx for _, idx in sorted(index.items())]
    first = [idx[0] for idx in rows]

    def mean(col):
        return np.array([np.nanmean(col[idx]) if np.isfinite(col[idx]).any() else np.nan for idx in rows])

    out = RunTable(optimizer=table.optimizer[first], N=table.N[first], D=table.D[first], loss=mean(table.loss),
                   seed=np.full(len(rows), -1), flops=mean(table.flops), step_cost=mean(table.step_cost),
                   wallclock_s=mean(table.wallclock_s), family=table.family[first],
                   step_cost_given=np.array([table.step_cost_given[idx].any() for idx in rows]), n_basis=table.n_basis,
                   source=table.source, excluded=table.excluded, tuning=table.tuning, tuning_protocol=table.tuning_protocol,
                   seed_noise=table.seed_noise,
                   warnings=table.warnings + [FitWarning(message="loss averaged over seeds per cell")],
                   sweep_names=table.sweep_names)
    return out
