"""The run record: the contract between training, sweeps and fitting.

Every grid point (an LLM run or a proxy-task run) owns one directory holding
``run.json``. Sweeps read only ``status``; the fitting stage reads only the
fields listed in ``FIT_FIELDS``. The README documents every field.

Writes are atomic (temp file in the same directory, fsync, rename), so a crash
never leaves a half-written record and never turns a finished one into garbage.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1
RECORD_NAME = "run.json"

RUNNING, DONE, DIVERGED, FAILED = "running", "done", "diverged", "failed"
STATUSES = (RUNNING, DONE, DIVERGED, FAILED)
FINISHED = (DONE, DIVERGED)  # a sweep never reruns these unless asked

# What the fitting stage needs from a record (see README "Run record").
FIT_FIELDS = (
    "run_id", "task", "status", "optimizer", "family", "size", "seed",
    "N", "N_total", "N_non_embedding", "D", "tokens_trained", "flops",
    "final_val_loss", "step_cost_ratio", "wall_time_s", "reason", "hyperparameters", "sweep", "branch", "tuning",
)

# Config keys that do not change what a grid point computes. They are removed
# before hashing so the same point always maps to the same run id and directory.
NON_SEMANTIC_KEYS = (
    "run_dir", "wandb", "log", "checkpoint", "device", "compile", "progress",
    "sweep_name", "sweep_dir", "batch.micro_batch_size", "data.cache_dir",
    "precision", "num_workers", "cpu_threads",
    # A branch start is checked to compute the same thing as the plain run (optlaw.train.trainer).
    "init.from_checkpoint", "step_cost", "hardware", "eval.micro_batch_size",
    # Proxy tasks: how many steps are timed for step_cost_ratio, not what is trained.
    "timing_repeats",
    # Where the hyperparameters came from (a tuning sweep's round, cell, law); the values themselves are in the config.
    "tuning",
)


def write_atomic(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync, rename: readers see the old or the whole new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON so that readers see either the old file or the new one, never a torn one."""

    def dump(fh: IO) -> None:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")

    write_atomic(path, dump)


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths appear in records; keep them readable.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """The record in ``run_dir``, or None when there is none (or it is unreadable)."""
    path = Path(run_dir) / RECORD_NAME
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_record(run_dir: str | os.PathLike, record: dict) -> None:
    record = dict(record)
    record.setdefault("schema_version", SCHEMA_VERSION)
    write_json_atomic(Path(run_dir) / RECORD_NAME, record)


def iter_records(root: str | os.PathLike) -> Iterator[tuple[Path, dict]]:
    """Every (run_dir, record) below ``root``, in sorted path order."""
    for path in sorted(Path(root).rglob(RECORD_NAME)):
        record = read_record(path.parent)
        if record is not None:
            yield path.parent, record


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
    blob = json.dumps(semantic_config(config), sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def make_run_id(config: dict, label: str = "") -> str:
    """``<label>-<hash>``: readable in a listing, unique by the semantic hash.

    Valid as a directory name and as a W&B run id (letters, digits, '-', '_').
    """
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label).strip("-_")
    digest = config_hash(config)
    return f"{safe}-{digest}" if safe else digest
