"""Set-up shared by the benchmarks that time a small CPU grid through `optlaw sweep` (local launcher).

bench_branching.py and bench_workers.py both write a sweep file into a config folder of their
own (found through $OPTLAW_EXTRA_CONFIGS, so the repository's configs/ stay untouched) and run
`optlaw sweep` on it in a fresh process, W&B off, timing the whole launch. Not a benchmark
itself: the name has no `bench_` prefix, so run_all.py and the README's table leave it out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml


def sweep_definition(name: str, *, models: list[str], optimizers: list[str], tokens: list[int],
                     fixed: dict, branching: dict, seeds: list[int] | None = None) -> dict:
    """A plain grid (absolute token budgets, no extra or per-optimizer axes) on the CPU."""
    return {
        "name": name, "task": "llm", "models": list(models), "optimizers": list(optimizers),
        "seeds": list(seeds if seeds is not None else [0]), "tokens_per_param": None, "tokens": list(tokens),
        "extra_axes": {}, "optimizer_axes": {}, "fixed": {"device": "cpu", **fixed}, "branching": dict(branching),
    }


def write_sweep(config_root: Path, definition: dict) -> Path:
    """<config_root>/sweep/<name>.yaml, so `sweep=<name>` finds it with $OPTLAW_EXTRA_CONFIGS=config_root."""
    path = Path(config_root) / "sweep" / f"{definition['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


def run_sweep(name: str, sweep_dir: Path, config_root: Path, overrides: list[str]) -> float:
    """Run `optlaw sweep sweep=<name>` to the end (its output discarded); its wall time in seconds."""
    env = dict(os.environ, OPTLAW_EXTRA_CONFIGS=str(config_root), WANDB_MODE="disabled")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optlaw", "sweep", f"sweep={name}", f"sweep_dir={sweep_dir}", *overrides],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def finished_records(sweep_dir: Path) -> list[dict]:
    """The readable run records of a sweep (a corrupt one is left out: these grids are rerun, not repaired)."""
    from optlaw.records import iter_json

    return [record for _, record in iter_json(Path(sweep_dir) / "runs") if isinstance(record, dict)]
