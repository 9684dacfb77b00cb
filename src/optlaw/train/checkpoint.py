"""Checkpoints: when to write them (``CheckpointPolicy``), atomic writes, rotation,
named keeps for budget branching, safe loads.

State is a dict of named parts holding only tensors and plain Python values, so
it loads with ``torch.load(weights_only=True)`` (no pickled code runs on load).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optlaw.config.train import CheckpointConfig
from optlaw.errors import UserError
from optlaw.jsonio import write_atomic

CHECKPOINT_DIR = "checkpoints"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
_KEEP_FILE = re.compile(r"^tokens_(\d+)\.pt$")


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a run writes checkpoints, decided after each optimizer step:

    - a rotating ``step_<n>.pt`` every ``every_steps`` steps (0: never), after the last
      step, and when the run is preempted; the newest ``keep`` of them stay;
    - a named ``tokens_<n>.pt`` after the first step that reaches each of ``keep_at_tokens``
      (the decay starts of shorter budgets, for budget branching); never rotated.
    """

    every_steps: int
    keep: int
    keep_at_tokens: tuple[int, ...]

    @classmethod
    def from_config(cls, cfg: CheckpointConfig) -> CheckpointPolicy:
        return cls(every_steps=cfg.every_steps, keep=max(1, cfg.keep),
                   keep_at_tokens=tuple(sorted(int(t) for t in cfg.keep_at_tokens)))

    def keeps_due(self, tokens_before: int, tokens_after: int) -> list[int]:
        """The named keeps a step from ``tokens_before`` to ``tokens_after`` trained tokens passes."""
        return [t for t in self.keep_at_tokens if tokens_before < t <= tokens_after]

    def rotating_due(self, step: int, total_steps: int, preempted: bool) -> bool:
        periodic = self.every_steps > 0 and step % self.every_steps == 0
        return periodic or preempted or step == total_steps


def save(state: dict[str, Any], run_dir: Path, *, keep_tokens: list[int], step: int | None, keep: int) -> None:
    """Write ``state`` as each named keep, then (``step`` given) as the rotating ``step_<n>.pt``, keeping ``keep``."""
    for tokens in keep_tokens:
        save_atomic(state, keep_path(run_dir, tokens))
    if step is not None:
        save_atomic(state, step_path(run_dir, step))
        rotate(run_dir, keep)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def step_path(run_dir: Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def keep_path(run_dir: Path, tokens: int) -> Path:
    return checkpoint_dir(run_dir) / f"tokens_{tokens}.pt"


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Temp file in the same folder, fsync, rename: a reader sees the old file or the whole new one."""
    write_atomic(path, lambda fh: torch.save(state, fh), binary=True)


def rotate(run_dir: Path, keep: int) -> None:
    """Drop all but the ``keep`` newest rotating checkpoints; named keeps (tokens_*.pt) stay."""
    steps = sorted(_rotating(run_dir), reverse=True)
    for _, path in steps[max(1, keep):]:
        path.unlink(missing_ok=True)


def _rotating(run_dir: Path) -> list[tuple[int, Path]]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    out = []
    for path in folder.iterdir():
        match = _STEP_FILE.match(path.name)
        if match:
            out.append((int(match.group(1)), path))
    return out


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_latest(run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """Newest checkpoint of this run that loads; a torn or corrupt file is skipped, not fatal."""
    found = latest(run_dir, map_location)
    return None if found is None else found[1]


def latest(run_dir: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of the newest rotating checkpoint that loads; unreadable ones are skipped with a warning."""
    for _, path in sorted(_rotating(run_dir), reverse=True):
        try:
            return path, load(path, map_location)
        except Exception as exc:  # noqa: BLE001 - any unreadable file means "try the previous one"
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            print(f"warning: skipping unreadable checkpoint {path}: {type(exc).__name__}: {first}", flush=True)
    return None


def load_branch_source(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint named by ``init.from_checkpoint`` (a file), or a one-line error."""
    source = Path(path)
    if not source.is_file():
        raise UserError(
            f"init.from_checkpoint={path} is not a file; point it at a parent run's checkpoints/tokens_<n>.pt "
            "(written by checkpoint.keep_at_tokens) or checkpoints/step_<n>.pt"
        )
    try:
        return load(source, map_location)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"init.from_checkpoint={path} cannot be loaded ({type(exc).__name__}); it is not an optlaw checkpoint") from None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def encode_config(config: dict) -> str:
    # The config rides along as a JSON string: weights_only loading accepts str, and
    # a branch child needs its parent's config to check that the schedules agree.
    return json.dumps(config, sort_keys=True)


def decode_config(text: str) -> dict:
    return json.loads(text)
