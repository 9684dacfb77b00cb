"""Is rho constant? The drift test recovers a known gamma and rejects constancy at about its nominal rate."""

from __future__ import annotations

import numpy as np
import pytest

from optlaw.fit import RunTable, fit_shared
from optlaw.fit.constancy import LEVEL, drift_test, rho_constancy
from optlaw.fit.synthetic import RHO, SIZES, TOKENS_PER_PARAM, TRUTH

N_REF = float(np.exp(np.mean(np.log(SIZES))))   # the test's N_ref: geometric mean of the distinct N


def drifting_table(gamma: dict, seed: int, noise: float = 0.004) -> RunTable:
    """The synthetic 3-optimizer grid with rho_D,o(N) = rho_D,o (N / N_ref)^gamma_o."""
    rng = np.random.default_rng(seed)
    rows = []
    t = TRUTH
    for opt, (rho_N, rho_D) in RHO.items():
        for N in SIZES:
            rho = rho_D * (N / N_REF) ** gamma.get(opt, 0.0)
            for tpp in TOKENS_PER_PARAM:
                D = tpp * N
                loss = t["E"] + t["A"] / (rho_N * N) ** t["alpha"] + t["B"] / (rho * D) ** t["beta"]
                rows.append((opt, N, D, loss * np.exp(noise * rng.standard_normal())))
    opt, N, D, loss = zip(*rows)
    return RunTable.from_columns(opt, N, D, loss)


def test_a_known_gamma_is_recovered_with_an_interval_that_covers_it():
    truth = {"muon": -0.12, "lion": 0.0}
    table = drifting_table(truth, seed=3)
    shared = fit_shared(table)
    test = drift_test(table, shared, on_b=True, bootstrap=200, seed=1)
    assert test.p_value < 1e-3                          # constancy rejected
    muon, lion = test.gamma["muon"], test.gamma["lion"]
    assert muon["gamma"] == pytest.approx(-0.12, abs=0.03)
    assert muon["ci"][0] < -0.12 < muon["ci"][1] and muon["ci"][1] < 0    # excludes constancy
    assert muon["p_value"] < 1e-3
    assert lion["ci"][0] < 0.0 < lion["ci"][1]          # lion's rho is constant and the interval says so
    # the drift law's rho at N_ref is the generating one
    assert muon["rho_at_reference_scale"] == pytest.approx(RHO["muon"][1], rel=0.1)


def test_effective_rho_by_N_follows_the_drift():
    table = drifting_table({"muon": -0.12}, seed=4, noise=0.001)
    doc = rho_constancy(table, fit_shared(table)).to_json()
    by_N = doc["optimizers"]["muon"]["effective_rho_D_by_N"]
    assert [row["N"] for row in by_N] == pytest.approx(list(SIZES))
    expected = RHO["muon"][1] * (SIZES / N_REF) ** -0.12
    assert [row["rho_D"] for row in by_N] == pytest.approx(list(expected), rel=0.08)
    assert doc["p_value"] < 1e-3 and doc["optimizers"]["muon"]["rho_D_exponent_N"] < 0


@pytest.mark.slow
def test_constant_rho_is_rejected_at_about_the_nominal_rate():
    # 120 draws of data whose rho is constant: the F test (level 0.05) should reject about 6 of them;
    # a binomial(120, 0.05) lies in [1, 13] with probability > 0.99.
    draws = 120
    p_values = []
    for seed in range(draws):
        table = drifting_table({}, seed=1000 + seed)
        p_values.append(drift_test(table, fit_shared(table), on_b=True).p_value)
    p = np.array(p_values)
    rejected = int(np.sum(p < LEVEL))
    assert 1 <= rejected <= 13, rejected
    # and the p-values are about uniform, not only at the one level
    assert 0.35 < np.mean(p) < 0.65
