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


def test_the_drift_laws_rho_at_N_ref_is_its_own_not_the_constant_laws():
    # Noise-free data with a planted drift. The drift law is then the truth, so its rho_D at N_ref is the
    # planted rho_D exactly and its own prediction of the data-only factor reproduces the data; the
    # constant law is misspecified and its rho_D (Huber headline, or the F test's least-squares null)
    # lands elsewhere. So on drifting data the drift line need not meet the constant rho at N_ref.
    table = drifting_table({"muon": -0.12}, seed=4, noise=0.0)
    shared = fit_shared(table, bootstrap=0)
    muon = rho_constancy(table, shared).to_json()["optimizers"]["muon"]
    planted = RHO["muon"][1]
    assert muon["rho_D_drift_law_at_reference_scale"] == pytest.approx(planted, rel=1e-6)
    assert muon["rho_D_exponent_N"] == pytest.approx(-0.12, abs=1e-6)
    data = [row["rho_D"] for row in muon["effective_rho_D_by_N"]]
    assert [row["rho_D"] for row in muon["drift_law_effective_rho_D_by_N"]] == pytest.approx(data, rel=1e-6)
    for constant in (shared.params["rho_D", "muon"], muon["rho_D_constant_law_least_squares"]):
        assert abs(np.log(constant / planted)) > np.log(1.05)
    # and where rho is constant, all three meet at N_ref (up to the noise)
    table = drifting_table({}, seed=4, noise=0.001)
    shared = fit_shared(table, bootstrap=0)
    muon = rho_constancy(table, shared).to_json()["optimizers"]["muon"]
    assert muon["rho_D_drift_law_at_reference_scale"] == pytest.approx(shared.params["rho_D", "muon"], rel=0.01)
    assert muon["rho_D_constant_law_least_squares"] == pytest.approx(shared.params["rho_D", "muon"], rel=0.01)


def test_the_data_only_factor_is_matched_by_the_laws_implied_factor_not_by_its_rho_D():
    # muon has rho_N = 0.85 and a constant rho_D = 1.6: at fixed N the data-only factor also carries the
    # N term (about 1.52 here), so the law's line in the plot is the law's own losses inverted the same way.
    table = drifting_table({}, seed=4, noise=0.001)
    shared = fit_shared(table, bootstrap=0)
    muon = rho_constancy(table, shared).to_json()["optimizers"]["muon"]
    data = np.array([row["rho_D"] for row in muon["effective_rho_D_by_N"]])
    implied = np.array([row["rho_D"] for row in muon["law_effective_rho_D_by_N"]])
    assert implied == pytest.approx(data, rel=0.015)
    assert np.all(shared.params["rho_D", "muon"] / data > 1.03)


def test_effective_rho_plot_draws_the_recorded_series(tmp_path, monkeypatch):
    from optlaw.fit import run_study
    from optlaw.report import plots

    study = run_study(drifting_table({"muon": -0.12}, seed=4, noise=0.001), bootstrap=0, holdout=None)
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.effective_rho(study, tmp_path)
    entry = study.document["rho_constancy"]["optimizers"]["muon"]
    ax = next(a for a in figures[0].axes if a.get_title().startswith("muon"))
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label, key in (("data only", "effective_rho_D_by_N"), ("constant-rho law", "law_effective_rho_D_by_N"),
                       ("drift law", "drift_law_effective_rho_D_by_N")):
        line = next(v for k, v in lines.items() if k.startswith(label))
        assert list(line.get_xdata()) == pytest.approx([row["N"] for row in entry[key]])
        assert list(line.get_ydata()) == pytest.approx([row["rho_D"] for row in entry[key]])
    caption = figures[0].legends[0].get_title().get_text()
    assert "need not equal the headline" in caption and "carries rho_N" in caption
    # the conclusions hold the data-only factor against the law's own, not against its rho_D parameter
    sentence = next(c for c in study.document["conclusions"]["supported"] if c.startswith("muon's token factor"))
    law = entry["law_effective_rho_D_by_N"]
    assert f"where the constant law gives {law[0]['rho_D']:.3g}" in sentence
