"""Issue 13, point 1, on a grid CI can afford: `optlaw demo --sweep demo_ci` (the demo's regime,
AdamW and Muon, 6.7k-40k parameters, 131k-1M tokens; 28 points) trains, fits and meets every
criterion of point 1 (measured 2026-11-30 on the 2-core machine under a load of 9-15 from other
jobs: 16 min 52 s for the sweep, 2 min for fits and plots; not measured idle).

Measured outcome: the shared law is `identified` and the separate AdamW fit is `weak` (its alpha
interval is wider than its value); Muon's rho_D interval is 1.27x wide, rho_N 1.72x; holding out
40k the shared law predicts better than the separate laws (RMSE of log loss 0.0036 vs 0.0120);
constant rho is not rejected (p = 0.71). The constancy test's outcome is not asserted, only that
it runs. Its learning rates are fixed (one transferred lr_mult per optimizer: tuning rounds would more
than double its CI time), so its learning-rate criterion is not asserted; the full demo tunes them
and met every criterion in its measured run (README "The demo").
"""

import json

import pytest

from optlaw.entry import cli
from optlaw.entry.demo import demo_checks


@pytest.mark.slow
# 28 points, one at a time per core: estimated ~4 min on 2 idle cores (16% of the full demo's
# FLOPs plus a process start per point; not measured idle), measured 19 min with the fits under
# a load of 9-15 and over the default 900 s under a load of 20, hence the longer limit.
@pytest.mark.timeout(1800)
def test_reduced_demo_grid_meets_the_interval_and_identifiability_criteria(tmp_path, capsys):
    out = tmp_path / "demo_ci"
    assert cli.main(["demo", "--out", str(out), "--sweep", "demo_ci", "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "fit" / "fit.json").read_text())
    assert doc["n_points"] == 28 and set(doc["optimizers"]) == {"adamw", "muon"}
    checks = {name: (passed, detail) for name, passed, detail in demo_checks(doc)}
    for name in ("shared law identified", "separate fits ill-conditioned", "rho_D intervals at most 2x wide",
                 "rho_N intervals at most 3x wide", "alpha and beta intervals exclude 0.03",
                 "shared law beats separate at the largest N held out", "rho constancy tested"):
        assert checks[name][0] is True, (name, checks[name][1])
    # Muon's data efficiency is resolved from 1 on this grid too (full grid: 1.83x [1.40, 2.14]).
    lo, hi = doc["optimizers"]["muon"]["rho_D_ci"]
    assert 1.0 < lo and hi < 3.0, (lo, hi)
    tail = printed.strip().splitlines()
    assert tail[-2].startswith("Muon reaches AdamW's loss with ") and "fewer tokens" in tail[-2]
    assert tail[-1].startswith("Checks: ")
