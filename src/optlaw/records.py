"""The run record: the contract between training, sweeps and fitting.

Every grid point (an LLM run or a proxy-task run) owns one directory holding
``run.json``: one ``RunRecord``, typed here. Every task writes one (``LLMRunRecord``
from the trainer, ``ProxyRunRecord`` from a proxy point); sweeps read only ``status``;
the fitting stage reads only the fields marked ``fit`` (``FIT_FIELDS``), which the
trainer also mirrors into the W&B summary. The README documents every field.

Schema versions: 1 was the untyped dict every run.json held until the record got a
class; 2 is this class. ``upgrade`` turns a record of any older version into the
current one, so records written before still read.

Writes are atomic (``optlaw.jsonio``), so a crash never leaves a half-written record.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import time
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypedDict

from optlaw.errors import UserError
from optlaw.jsonio import dumps, plain, write_json_atomic

SCHEMA_VERSION = 2
RECORD_NAME = "run.json"


class Status(StrEnum):
    RUNNING = "running"    # in progress, preempted, or killed (resumable)
    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"


RUNNING, DONE, DIVERGED, FAILED = Status.RUNNING, Status.DONE, Status.DIVERGED, Status.FAILED
CORRUPT = "corrupt"  # not a status a record holds: what readers call a run.json they cannot read
STATUSES = tuple(Status)
FINISHED = (DONE, DIVERGED)  # a sweep never reruns these unless asked


class RecordError(UserError):
    """A ``run.json`` (or W&B summary) that is not a run record this optlaw reads."""


class NewerRecord(RecordError):
    """A record of a schema version newer than this optlaw reads: not damaged, just too new."""


class Eval(TypedDict):
    step: int
    tokens: int
    val_loss: float


class Branch(TypedDict):
    parent_run_id: str
    from_step: int
    from_tokens: int
    from_checkpoint: str


class Tuning(TypedDict, total=False):
    """Where a point's hyperparameters came from (optlaw.config.tuning.TuningSourceConfig, docs/sweeps.md "Tuning").

    Not part of the run id: the values themselves are in the config; this says how they were chosen.
    """

    source: str                    # tuned | predicted | fixed
    cell: str | None               # e.g. 'llama/1m adamw tokens=32768'
    round: int | None              # the cell's round that planned the point (1 = the first grid)
    coordinate: str | None         # tuned: the key being tuned when the point was planned
    values: dict[str, float]       # the tuned keys and this point's value of each
    positions: dict[str, float]    # tuned: per key, grid steps from its start value
    reused_from: str | None        # tuned: the cell whose winner this point reuses (scope per_size)
    predicted: dict[str, Any]      # predicted: per key the law's value, interval and coefficients


class StepCost(TypedDict, total=False):
    fwd_bwd_s: float | None
    optimizer_step_s: float | None
    adamw_step_s: float | None
    repeats: int
    window_steps: int  # absent when repeats is 0 (nothing was timed)


def _fit(default: Any = None) -> Any:
    """A field the fitting stage reads (and the W&B summary carries)."""
    return field(default=default, metadata={"fit": True})


@dataclass(kw_only=True)
class RunRecord:
    """The fields every task writes; a subclass per task adds its own (README, "The run record").

    Mutable on purpose: the trainer keeps its run's record current as it trains.
    """

    schema_version: int = _fit(SCHEMA_VERSION)
    run_id: str = field(metadata={"fit": True})
    task: str = field(metadata={"fit": True})
    status: Status = field(metadata={"fit": True})
    reason: str | None = _fit()                 # why diverged/failed, or the preemption message
    optimizer: str | None = _fit()              # optimizer_name(config optimizer section)
    family: str | None = _fit()
    size: str | None = _fit()
    seed: int | None = _fit()
    sweep: str | None = _fit()
    N: float | None = _fit()                    # the budget's parameter count (basis per param_basis)
    N_total: float | None = _fit()
    N_non_embedding: float | None = _fit()
    D: float | None = _fit()                    # planned training tokens (proxy: optimizer steps)
    tokens_trained: float | None = _fit()
    flops: float | None = _fit()
    final_val_loss: float | None = _fit()
    step_cost_ratio: float | None = _fit()
    wall_time_s: float | None = _fit()
    hyperparameters: dict[str, Any] | None = _fit()
    branch: Branch | None = _fit()
    tuning: Tuning | None = _fit()              # where the hyperparameters came from (a tuning sweep); not in the run id
    started_at: str | None = None
    config: dict[str, Any] | None = None        # the resolved config; written last, it is long

    TASKS: ClassVar[tuple[str, ...]] = ()       # the tasks whose records have this class

    def __post_init__(self) -> None:
        self.status = _status(self.status)

    def params(self, basis: str) -> float | None:
        """N on a basis (``total`` or ``non_embedding``); records of one N only (proxy tasks) give ``N``."""
        value = self.N_total if basis == "total" else self.N_non_embedding
        return self.N if value is None else value

    def fit_fields(self) -> dict[str, Any]:
        """The fields the fitting stage reads, as JSON values (the W&B summary of a run)."""
        return {name: plain(getattr(self, name)) for name in FIT_FIELDS}

    def to_json(self) -> dict[str, Any]:
        """``run.json``'s content: every field in declaration order, the config last."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "config"] + ["config"]
        return {name: plain(getattr(self, name)) for name in names}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record of any version this optlaw reads (upgraded), as the class of its task.

        Keys the class does not know are left out (a W&B summary holds its own as well); a
        value of the wrong JSON type (a string where a number belongs) is refused. Raises
        ``RecordError`` for anything that is not a run record.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"a run record is a JSON object, not {type(data).__name__}")
        current = upgrade(data)
        missing = [name for name in ("run_id", "task", "status") if current.get(name) is None]
        if missing:
            raise RecordError(f"not a run record: it lacks {', '.join(missing)}")
        kind = record_class(str(current["task"])) if cls is RunRecord else cls
        known = {f.name for f in dataclasses.fields(kind)}
        values = {k: v for k, v in current.items() if k in known}
        _check_types(kind, values)
        return kind(**values)


@dataclass(kw_only=True)
class LLMRunRecord(RunRecord):
    """An LLM grid point's record (``optlaw.train``); docs/run_record.md and the README."""

    TASKS: ClassVar[tuple[str, ...]] = ("llm",)

    param_basis: str | None = None
    D_requested: int | None = None
    steps: int | None = None
    steps_done: int = 0
    budget: dict[str, Any] | None = None        # BudgetPlan.to_dict()
    flops_per_token: float | None = None
    evals: list[Eval] = field(default_factory=list)
    entropy_floor_nats: float | None = None
    mean_fwd_bwd_s: float | None = None
    mean_optimizer_step_s: float | None = None
    mean_data_wait_s: float | None = None
    tokens_per_s: float | None = None
    step_cost: StepCost | None = None
    # How each machine-dependent value was chosen ({"muon.ns_dtype": {"value", "source", ...}});
    # the value itself is in hyperparameters (docs/optimizers.md, "Choices measured on the machine").
    choices: dict[str, Any] = field(default_factory=dict)
    # What computed the numbers (optlaw.machine.machine_key: device, CPU model and flags or GPU,
    # torch build, threads) for the segment that last trained: these change losses by rounding,
    # not the run id, so the fit warns when the runs it fits come from more than one.
    machine: dict[str, Any] | None = None
    versions: dict[str, str | None] | None = None
    wandb_id: str | None = None                 # this run directory's W&B run (one per directory)
    updated_at: str | None = None


@dataclass(kw_only=True)
class ProxyRunRecord(RunRecord):
    """A proxy-task point's record (``optlaw.proxy.point``); fields null until known (docs/proxy.md)."""

    TASKS: ClassVar[tuple[str, ...]] = ("random_features", "quadratic")

    s: float | None = None
    source_r: float | None = None
    damping: float | None = None
    n_samples: int | None = None
    run_dir: str | None = None
    loss_parts: dict[str, float] | None = None
    preconditioner_setup_s: float | None = None
    runtime_s: float | None = None
    finished_at: str | None = None
    error: str | None = None
    traceback: str | None = None


FIT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunRecord) if f.metadata.get("fit"))


def record_class(task: str) -> type[RunRecord]:
    """The record class of a task; a task this optlaw does not know reads as the common fields."""
    for kind in (LLMRunRecord, ProxyRunRecord):
        if task in kind.TASKS:
            return kind
    return RunRecord


# JSON types a field of each annotation accepts on reading: a number field takes an int or a
# float (JSON and W&B do not keep the difference), a TypedDict a dict.
_JSON_TYPES: dict[type, tuple[type, ...]] = {int: (int, float), float: (int, float), str: (str,), dict: (dict,),
                                             list: (list,)}


@functools.cache
def _accepted_types(kind: type[RunRecord]) -> dict[str, tuple[type, ...] | None]:
    """Per field of ``kind``: the JSON types its value may have (None: any, e.g. the status enum, checked itself)."""
    out: dict[str, tuple[type, ...] | None] = {}
    for name, hint in typing.get_type_hints(kind).items():
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        accepted: tuple[type, ...] = ()
        for option in options:
            if option is type(None):
                accepted += (type(None),)
            elif typing.is_typeddict(option):
                accepted += (dict,)
            else:
                accepted += _JSON_TYPES.get(typing.get_origin(option) or option, ())
        out[name] = accepted or None
    return out


def _check_types(kind: type[RunRecord], values: Mapping[str, Any]) -> None:
    accepted = _accepted_types(kind)
    for name, value in values.items():
        types_ = accepted.get(name)
        if types_ is None:
            continue
        if not isinstance(value, types_) or (isinstance(value, bool) and bool not in types_):
            expected = " or ".join(sorted({"null" if t is type(None) else "a number" if t in (int, float) else
                                           {str: "a string", dict: "an object", list: "a list"}[t] for t in types_}))
            raise RecordError(f"field {name} is {value!r:.60}, not {expected}")


def _status(value: Any) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise RecordError(f"status {value!r} is not one of {', '.join(STATUSES)}") from None


def optimizer_name(optimizer: Mapping[str, Any]) -> str:
    """The name a record, a run id and a fit give an optimizer section: its ``name``, and for
    ``generic`` its class, so runs of different classes never merge: ``generic-NAdam`` for
    torch's own (``torch.optim.NAdam``), ``generic-<package>.<class>`` for any other library's,
    since libraries share class names (``torch_optimizer.Lamb`` and ``pytorch_optimizer.Lamb``
    are different algorithms: ``generic-torch_optimizer.Lamb``, ``generic-pytorch_optimizer.Lamb``)."""
    name = str(optimizer.get("name", "opt"))
    if name == "generic" and optimizer.get("cls"):
        module, _, cls = str(optimizer["cls"]).rpartition(".")
        package = module.split(".")[0]
        return f"generic-{cls}" if package == "torch" else f"generic-{package}.{cls}"
    return name


# ----- versions ---------------------------------------------------------------------------------


def upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """A record of any version this optlaw reads as the current version (a new dict; ``data`` is untouched).

    A record without ``schema_version`` is version 1: every version-1 run.json carried one,
    but version-1 W&B summaries did not.

    1 -> 2: the typed record. Field names and meanings stay; what changes is that a
    ``generic`` optimizer is named by its class (``optimizer_name``), read from the
    record's config (a W&B summary has none and keeps ``generic``).
    """
    out = dict(data)
    version = out.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise RecordError(f"schema_version {version!r} is not a record version")
    if version > SCHEMA_VERSION:
        raise NewerRecord(f"written by a newer optlaw (schema_version {version}; this one reads up to "
                          f"{SCHEMA_VERSION}); upgrade optlaw to read it")
    if version == 1:
        optimizer = (out.get("config") or {}).get("optimizer")
        if out.get("optimizer") == "generic" and isinstance(optimizer, Mapping):
            out["optimizer"] = optimizer_name(optimizer)
        out["schema_version"] = version = 2
    return out


# ----- files ------------------------------------------------------------------------------------


class CorruptRecord(RecordError):
    """A ``run.json`` that cannot be read as a run record: bytes that are not UTF-8, JSON that
    is torn or not an object, or an object that is no record. Listed as ``corrupt`` by path."""


def read_json(run_dir: str | os.PathLike) -> dict | None:
    """The JSON object in ``run_dir/run.json`` as written, or None when there is none.

    Records are written atomically, so a file that does not parse was damaged after the
    fact (a disk, a copy, an editor): ``CorruptRecord`` naming the path, never treated as missing.
    """
    path = Path(run_dir) / RECORD_NAME
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise CorruptRecord(f"{path}: corrupt, not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CorruptRecord(f"{path}: corrupt, not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except IsADirectoryError:
        raise CorruptRecord(f"{path}: corrupt, a directory, not a file") from None
    if not isinstance(data, dict):
        raise CorruptRecord(f"{path}: corrupt, a JSON {type(data).__name__}, not an object")
    return data


def read_record(run_dir: str | os.PathLike) -> RunRecord | None:
    """The record in ``run_dir`` (upgraded to the current version), or None when there is none.

    A file that is not a run record is a one-line ``CorruptRecord`` naming it (a record of a
    newer optlaw a ``RecordError``): it is not overwritten, nor counted as missing.
    """
    data = read_json(run_dir)
    if data is None:
        return None
    try:
        return RunRecord.from_json(data)
    except NewerRecord as exc:
        raise RecordError(f"{Path(run_dir) / RECORD_NAME}: {exc}") from None
    except RecordError as exc:
        raise CorruptRecord(f"{Path(run_dir) / RECORD_NAME}: corrupt, {exc}") from None


def read_status(run_dir: str | os.PathLike) -> str:
    """The status of the record in ``run_dir`` as a string (``done``, ...), ``missing``, or ``corrupt``."""
    try:
        record = read_record(run_dir)
    except CorruptRecord:
        return CORRUPT
    return str(record.status) if record is not None else "missing"


def set_aside_corrupt(run_dir: str | os.PathLike) -> Path | None:
    """Keep a damaged ``run.json`` as ``run.json.corrupt-<time>`` so a rerun can write a fresh one; its new path."""
    path = Path(run_dir) / RECORD_NAME
    try:
        read_record(run_dir)
        return None
    except CorruptRecord:
        pass
    except RecordError:  # readable, only newer than this optlaw: not ours to move
        return None
    target = path.with_name(f"{RECORD_NAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    return target


def write_record(run_dir: str | os.PathLike, record: RunRecord) -> None:
    write_json_atomic(Path(run_dir) / RECORD_NAME, record.to_json())


def iter_json(root: str | os.PathLike) -> Iterator[tuple[Path, dict | CorruptRecord]]:
    """Every (run_dir, JSON object as written) below ``root``, in sorted path order; an unreadable
    file comes as its ``CorruptRecord`` in place of the object, so callers list it, never skip it.

    For readers that take each document on its own terms (the fit stage lists what is not a record).
    """
    for path in sorted(Path(root).rglob(RECORD_NAME)):
        try:
            data: dict | CorruptRecord | None = read_json(path.parent)
        except CorruptRecord as exc:
            data = exc
        if data is not None:
            yield path.parent, data


# ----- run ids ----------------------------------------------------------------------------------

# Config keys that do not change what a grid point computes. They are removed
# before hashing so the same point always maps to the same run id and directory.
NON_SEMANTIC_KEYS = (
    "run_dir", "wandb", "log", "checkpoint", "device", "compile", "progress",
    "sweep_name", "sweep_dir", "batch.micro_batch_size", "data.cache_dir",
    "precision", "num_workers", "cpu_threads",
    # A branch start is checked to compute the same thing as the plain run (optlaw.train.trainer).
    "init.from_checkpoint", "step_cost", "hardware", "eval.micro_batch_size",
    # Speed and memory options (optlaw.config.perf); the chunked loss equals the plain one to rounding.
    "perf",
    # Proxy tasks: how many steps are timed for step_cost_ratio, not what is trained.
    "timing_repeats",
    # Where the hyperparameters came from (a tuning sweep's round, cell, law); the values themselves are in the config.
    "tuning",
)


def semantic_config(config: dict) -> dict:
    """The config minus keys that do not change the computation (``NON_SEMANTIC_KEYS``)."""
    cfg = copy.deepcopy(config)
    for dotted in NON_SEMANTIC_KEYS:
        node = cfg
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(leaf, None)
    return cfg


def config_hash(config: dict, length: int = 10) -> str:
    """Stable hash of the semantic part of a resolved config (seed included)."""
    blob = dumps(semantic_config(config), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def make_run_id(config: dict, label: str = "") -> str:
    """``<label>-<hash>``: readable in a listing, unique by the semantic hash.

    Valid as a directory name and as a W&B run id (letters, digits, '-', '_').
    """
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label).strip("-_")
    digest = config_hash(config)
    return f"{safe}-{digest}" if safe else digest
