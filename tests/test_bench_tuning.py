"""scripts/bench/bench_tuning.py's sweeps and the fixed grid it compares the protocol with (the
benchmark itself takes minutes: its figures are in docs/benchmarks.md)."""

import importlib
import math
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
KEY = "optimizer.lr_mult"


@pytest.fixture
def bench_tuning(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("bench_tuning")


def test_larger_sweep_is_tune_smoke_on_more_cells(bench_tuning):
    smoke, larger = bench_tuning.definitions("tune_smoke"), bench_tuning.definitions("larger")
    cells = {name: len(d["models"]) * len(d["tokens"]) * len(d["optimizers"]) for name, d in
             (("tune_smoke", smoke), ("larger", larger))}
    assert cells == {"tune_smoke": 8, "larger": 18}
    # Larger in both directions: the smoke sweep's sizes and budgets, and more of each.
    assert set(smoke["models"]) < set(larger["models"]) and set(smoke["tokens"]) < set(larger["tokens"])
    same = ("optimizers", "seeds", "fixed", "tuning")
    assert {k: larger[k] for k in same} == {k: smoke[k] for k in same}
    assert larger["name"] != smoke["name"]  # its own sweep directory and records


def cell(optimizer: str, start: float, positions: list[int]):
    walk = types.SimpleNamespace(values={k: start * 2.0 ** k for k in positions})
    spec = types.SimpleNamespace(axes={"optimizer": optimizer}, starts={KEY: start})
    return types.SimpleNamespace(spec=spec, coordinates=[walk])


def test_grid_spans_every_value_any_cell_of_the_optimizer_tried(bench_tuning):
    assert bench_tuning.KEY == KEY
    state = types.SimpleNamespace(cells=[cell("adamw", 0.5, [-1, 0, 1, 2, 3, 4]), cell("adamw", 0.5, [-1, 0, 1]),
                                         cell("muon", 0.5, [-1, 0, 1, 2, 3, 4, 5, 6])])
    adamw = bench_tuning.grid_values(state, "adamw")
    assert adamw == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]  # the union of both cells' walks, every step between
    assert bench_tuning.grid_values(state, "muon")[-1] == 32.0
    assert all(math.log2(v / 0.5).is_integer() for v in adamw)
