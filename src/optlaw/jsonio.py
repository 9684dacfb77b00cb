"""JSON for the whole package: one "plainer" and the atomic writers.

Records, metrics, manifests, fit.json and reports hold numbers that arrive as numpy
or torch scalars, tuples, ``torch.Size``, enums, paths and dataclasses. ``plain`` turns
all of them into JSON types in one place, so every file optlaw writes agrees on how a
value looks (an ``int64`` is an int, a tuple a list, an enum its value). Strict JSON
has no NaN or infinity: a caller that wants strict JSON (fit.json, read by other tools)
passes ``finite_only=True`` and gets ``null`` for them.

Writes are atomic (temp file in the same directory, fsync, rename), so a crash never
leaves a half-written file and never turns a finished one into garbage.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import PurePath
from typing import IO, Any


def plain(obj: Any, *, finite_only: bool = False) -> Any:
    """``obj`` as JSON types: dicts with string keys, lists, str, int, float, bool, None.

    Numpy and torch scalars become Python numbers, arrays and tensors nested lists;
    tuples and ``torch.Size`` lists; enums their value; paths strings; dataclass
    instances dicts of their fields. ``finite_only``: NaN and +-inf become None.
    Anything else is a TypeError naming its type: a value never turns silently into text.
    """
    if obj is None or isinstance(obj, (bool, str)) and not isinstance(obj, Enum):
        return obj
    if isinstance(obj, Enum):
        return plain(obj.value, finite_only=finite_only)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _number(float(obj), finite_only)
    if isinstance(obj, Mapping):
        return {str(k): plain(v, finite_only=finite_only) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):  # torch.Size is a tuple
        return [plain(v, finite_only=finite_only) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name), finite_only=finite_only) for f in dataclasses.fields(obj)}
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")  # no value is theirs unless they are loaded
    if np is not None and isinstance(obj, np.generic):  # numpy scalars: bool_, integer, floating
        return plain(obj.item(), finite_only=finite_only)
    if (np is not None and isinstance(obj, np.ndarray)) or (torch is not None and isinstance(obj, torch.Tensor)):
        return plain(obj.tolist(), finite_only=finite_only)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _number(value: float, finite_only: bool) -> float | None:
    return value if math.isfinite(value) or not finite_only else None


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False, finite_only: bool = False) -> str:
    """``json.dumps`` of ``plain(obj)``."""
    return json.dumps(plain(obj, finite_only=finite_only), indent=indent, sort_keys=sort_keys)


def write_atomic(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync, rename: readers see the old or the whole new file.

    The file gets the mode the umask gives a new file (mkstemp's 0600 would hide records
    and checkpoints from colleagues on a shared project folder). An OS error (disk full,
    read-only) is raised as ``OSError`` naming ``path``, also when the writer is a library
    that wraps it in its own exception (torch.save reports a full disk as "enforce fail at
    inline_container.cc").
    """
    path = PurePath(path)
    folder = os.fspath(path.parent)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _naming(exc, path) from None
    stream = None
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            stream = _ErrorKeepingStream(fh)
            write(stream)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = stream.error if stream is not None and stream.error is not None else exc
        if isinstance(cause, OSError):
            raise _naming(cause, path) from None
        raise


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask: 0o666 minus the umask's bits."""
    try:  # Linux shows the umask without changing it; os.umask can only set it
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _naming(exc: OSError, path: PurePath) -> OSError:
    return exc if exc.filename else OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


class _ErrorKeepingStream:
    """A file object that remembers the OS error of a failed write before passing it on, so the
    error survives writers that replace it with their own (torch.save)."""

    def __init__(self, fh: IO) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, finite_only: bool = False) -> None:
    """Write ``plain(obj)`` as indented JSON so that readers see the old file or the new one, never a torn one."""
    text = dumps(obj, indent=2, finite_only=finite_only) + "\n"  # plained before the file is opened
    write_atomic(path, lambda fh: fh.write(text))
