"""The sweep files bench_branching.py and bench_workers.py write (scripts/bench/local_sweep.py) are
valid optlaw sweeps with the grids the benchmarks describe, composed the way `optlaw sweep` does."""

import importlib
import types
from pathlib import Path

import pytest

from optlaw.config import compose
from optlaw.sweep.grid import definition_to_plain, expand

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their sibling as `python scripts/bench/x.py` would
    return types.SimpleNamespace(**{name: importlib.import_module(name)
                                    for name in ("local_sweep", "bench_branching", "bench_workers")})


def composed(config_root: Path, name: str) -> dict:
    return definition_to_plain(compose(None, [f"+sweep={name}"], extra_search_path=str(config_root)).sweep)


def test_workers_default_grid_composes(bench, tmp_path):
    # The benchmark's own default grid, every point composed and checked as `optlaw sweep` does (the
    # first version's 1024-token step was not a multiple of the default micro batch: every point refused).
    args = bench.bench_workers.parse_args([])
    bench.local_sweep.write_sweep(tmp_path, bench.bench_workers.grid_definition(args))
    plain = composed(tmp_path, "bench_workers")
    assert plain["fixed"] == {"device": "cpu", **bench.bench_workers.FIXED}
    assert plain["branching"]["enabled"] is False
    points = expand(plain)
    assert {(p.axes["optimizer"], p.tokens, p.axes["seed"]) for p in points} == {
        (o, t, s) for o in args.optimizers for t in args.tokens for s in args.seeds}
    assert len(points) == len(args.models) * len(args.optimizers) * len(args.tokens) * len(args.seeds)


def test_branching_default_grids_have_the_same_run_ids(bench, tmp_path):
    # The benchmark's claim: with and without branching every point is the same computation (the same
    # WSD schedule), so both grids have the same run ids; only how the points are reached differs.
    args = bench.bench_branching.parse_args([])
    ids = {}
    for branching in (False, True):
        name = "bench_branched" if branching else "bench_plain"
        bench.local_sweep.write_sweep(tmp_path, bench.bench_branching.grid_definition(name, args, branching))
        plain = composed(tmp_path, name)
        assert plain["branching"]["enabled"] is branching
        assert plain["branching"]["warmup_tokens"] == args.warmup_tokens == plain["fixed"]["schedule.warmup_tokens"]
        assert plain["fixed"]["schedule.name"] == "wsd"
        ids[branching] = sorted(p.run_id for p in expand(plain))
    assert len(ids[False]) == len(args.models) * len(args.optimizers) * len(args.tokens)
    assert ids[False] == ids[True]
