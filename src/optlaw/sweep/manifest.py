"""``<sweep_dir>/manifest.json``: the sweep definition and every point's run id and overrides.

The manifest is what launchers, sbatch templates and ``optlaw status`` read; it is
rewritten on each launch from the same definition, so its ids never change. A
sweep directory belongs to one definition: launching a different one into it is
refused, naming the keys that differ, so results of two grids are never mixed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from pathlib import Path
from typing import Any

from optlaw.errors import UserError
from optlaw.jsonio import write_json_atomic
from optlaw.sweep.grid import GridPoint

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1


def manifest_path(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / MANIFEST_NAME


def read_manifest(sweep_dir: str | Path) -> dict:
    path = manifest_path(sweep_dir)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UserError(f"no {MANIFEST_NAME} in {sweep_dir}; create it with `optlaw sweep sweep=NAME sweep_dir={sweep_dir} --dry-run`") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); restore it or expand the sweep again into a new sweep_dir") from None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": value}`` (lists kept whole), for naming differing keys."""
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for key, value in obj.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        if not obj and prefix:
            flat[prefix[:-1]] = {}
        return flat
    return {prefix[:-1]: obj}


def differing_keys(old: dict, new: dict) -> list[str]:
    a, b = flatten(old), flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def check_same_definition(sweep_dir: str | Path, definition: dict) -> None:
    """Refuse to launch ``definition`` into a sweep dir made by another one."""
    path = manifest_path(sweep_dir)
    if not path.exists():
        return
    old = read_manifest(sweep_dir).get("definition", {})
    diff = differing_keys(old, definition)
    if diff:
        shown = ", ".join(f"{k} ({flatten(old).get(k, '<absent>')!r} -> {flatten(definition).get(k, '<absent>')!r})" for k in diff[:6])
        more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
        raise UserError(
            f"{sweep_dir} holds a different sweep definition; differing keys: {shown}{more}. "
            "Use a new sweep_dir for the new grid (results of two grids are never mixed)"
        )


def write_manifest(sweep_dir: str | Path, definition: dict, points: list[GridPoint], extra_fixed: list[str]) -> dict:
    sweep_dir = Path(sweep_dir)
    previous = read_manifest(sweep_dir) if manifest_path(sweep_dir).exists() else {}
    manifest = _manifest(previous, definition, [p.to_json() for p in points], extra_fixed)
    write_json_atomic(manifest_path(sweep_dir), manifest)
    return manifest


def write_tuning_manifest(sweep_dir: str | Path, definition: dict, points: list[GridPoint], extra_fixed: list[str],
                          tuning: dict) -> dict:
    """A tuning sweep's manifest: every point any plan listed stays, in its place (an sbatch array's
    ``--index`` keeps pointing at the same point), the plan's new points are appended, and ``tuning``
    holds the cells. Read, merge and write happen under a lock, so two launchers planning rounds at
    once never drop each other's points."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with _locked(sweep_dir / ".manifest.lock"):
        previous = read_manifest(sweep_dir) if manifest_path(sweep_dir).exists() else {}
        fresh = {p.run_id: p.to_json() for p in points}
        merged = [fresh.pop(p["run_id"], p) for p in previous.get("points", [])] + list(fresh.values())
        manifest = _manifest(previous, definition, merged, extra_fixed) | {"tuning": tuning}
        if manifest != previous:  # a launch replans whenever a point ends; most plans change nothing
            write_json_atomic(manifest_path(sweep_dir), manifest)
    return manifest


def _manifest(previous: dict, definition: dict, points: list[dict], extra_fixed: list[str]) -> dict:
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "sweep": definition.get("name"),
        "created_at": previous.get("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        "definition": definition,
        "extra_overrides": extra_fixed,
        "points": points,
    }


@contextlib.contextmanager
def _locked(path: Path):
    # flock: released by the kernel if the holder dies, so a killed launcher never leaves it held.
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def point_by_id(manifest: dict, run_id: str) -> dict:
    for point in manifest["points"]:
        if point["run_id"] == run_id:
            return point
    raise UserError(f"run id {run_id} is not in this sweep's manifest; check `optlaw status` for the ids")
