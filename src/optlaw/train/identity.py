"""An LLM grid point's identity: a readable label plus the hash of its semantic config.

The trainer names its run directory and record with it, and W&B tags runs with the
budget label. Naming a point of any task (proxy points label themselves) is the entry
layer's job: ``optlaw.entry.points.run_id``.
"""

from __future__ import annotations

from typing import Any

from optlaw.errors import ConfigError, UserError
from optlaw.records import make_run_id, optimizer_name, semantic_config


def budget_label(budget: dict[str, Any]) -> str:
    if budget.get("tokens") is not None:
        return f"{_short_count(float(budget['tokens']))}tok"
    ratio = float(budget.get("tokens_per_param") or 0)
    basis = "" if budget.get("param_basis", "non_embedding") == "non_embedding" else "tot"
    return f"{ratio:g}tpp{basis}"


def run_label(config: dict[str, Any]) -> str:
    """E.g. ``llama-1m-adamw-2Mtok-s0``: family, size, optimizer, budget, seed, and the
    learning-rate multiplier when it is not 1 (``...-lr0p5``), so the points of a tuning
    sweep can be told apart by name, not only by hash. The optimizer is named as the
    record names it (``records.optimizer_name``): ``generic`` carries its class,
    ``llama-1m-generic-NAdam-2Mtok-s0``."""
    model = config.get("model") or {}
    optimizer = config.get("optimizer") or {}
    parts = [
        str(model.get("family", "model")),
        str(model.get("size", "")),
        optimizer_name(optimizer),
        budget_label(config.get("budget") or {}),
        f"s{config.get('seed', 0)}",
    ]
    lr_mult = optimizer.get("lr_mult")
    if lr_mult is not None and float(lr_mult) != 1.0:
        parts.append(f"lr{float(lr_mult):g}".replace(".", "p"))
    return "-".join(p for p in parts if p)


def run_id(config: dict[str, Any]) -> str:
    """The run id of a resolved LLM config (plain dict): ``<label>-<semantic hash>``."""
    task = config.get("task", "llm")
    if task != "llm":
        # A proxy config has no model or budget: an LLM label would be wrong, not just ugly.
        raise ConfigError(f"task={task!r} is not an LLM point; optlaw.entry.points.run_id names points of every task")
    return make_run_id(config, run_label(config))


def _short_count(value: float) -> str:
    # 2000000 -> "2M", 2500000 -> "2.5M": run ids stay short and free of dots.
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}".replace(".", "p") + unit
    return f"{value:g}"


def differing_keys(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The dotted semantic config keys (``records.semantic_config``) whose values differ, as
    ``key=theirs->mine``, shallowest first; a section only one side has is one entry."""
    out: list[tuple[int, str]] = []
    _diff(semantic_config(theirs), semantic_config(mine), "", out)
    return [text for _, text in sorted(out)]


def _diff(theirs: Any, mine: Any, prefix: str, out: list[tuple[int, str]]) -> None:
    if isinstance(theirs, dict) and isinstance(mine, dict):
        for key in sorted(set(theirs) | set(mine)):
            _diff(theirs.get(key, _UNSET), mine.get(key, _UNSET), f"{prefix}{key}.", out)
    elif theirs != mine:
        key = prefix[:-1]
        out.append((key.count("."), f"{key}={_short(theirs)}->{_short(mine)}"))


_UNSET = "<unset>"


def _short(value: Any) -> str:
    return "{...}" if isinstance(value, dict) else str(value)


def check_run_dir_owner(run_dir: Any, run_id: str, config: dict[str, Any], found_id: str,
                        found_config: dict[str, Any] | None, source: str) -> None:
    """A run directory belongs to one run id: a record or checkpoint of another run there is a one-line error.

    Resuming another run's checkpoint (or calling its finished record this run's) would
    give a result labelled with this config but computed with that one.
    """
    if found_id == run_id:
        return
    keys = differing_keys(config, found_config) if isinstance(found_config, dict) else []
    what = (f"its config differs in {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}" if keys
            else "its config has the same keys but another run id (written by another optlaw version?)")
    raise UserError(
        f"run_dir={run_dir} belongs to run {found_id} ({source}), not to this run {run_id}: {what}; "
        f"pass another run_dir (or drop run_dir= to get runs/{run_id}), or delete {run_dir} to start over"
    )
