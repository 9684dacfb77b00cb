"""Shared-exponent, separate and compute laws on synthetic ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from optlaw.errors import UserError
from optlaw.fit import (
    WarningKind, cell_bootstrap_counts, check_budget, compute_optimal, fit_compute, fit_separate, fit_shared,
)
from optlaw.fit.holdout import holdout_check
from optlaw.fit.table import RunTable
from optlaw.fit.synthetic import RHO, TRUTH, synthetic_table, true_loss


def test_noise_free_shared_law_recovered_exactly():
    fit = fit_shared(synthetic_table(noise=0.0), reference="adamw")
    for name, value in TRUTH.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-4), name
    for opt, (rho_N, rho_D) in RHO.items():
        assert fit.params["rho_N", opt] == pytest.approx(rho_N, rel=1e-4)
        assert fit.params["rho_D", opt] == pytest.approx(rho_D, rel=1e-4)
    assert fit.predict(1e8, 2e9, "muon") == pytest.approx(true_loss(1e8, 2e9, "muon"), rel=1e-6)


def test_noisy_fit_recovers_every_parameter_within_its_bootstrap_interval():
    # 0.4% multiplicative noise, 75 cells, 300 replicates.
    fit = fit_shared(synthetic_table(seed=1, noise=0.004), bootstrap=300, seed=1)
    truth = dict(TRUTH, allocation_exponent=TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"]))
    for opt, (rho_N, rho_D) in RHO.items():
        truth["rho_N", opt], truth["rho_D", opt] = rho_N, rho_D
    for name, value in truth.items():
        lo, hi = fit.ci[name]
        assert lo - 1e-9 <= value <= hi + 1e-9, (name, value, lo, hi)
        assert lo - 1e-9 <= fit.params[name] <= hi + 1e-9, name


@pytest.mark.slow
def test_bootstrap_interval_coverage_is_near_nominal():
    # 40 independent data sets x 200 replicates; nominal 95%. With 40 draws the count of
    # covering intervals is >= 33 with probability > 0.99 if coverage really is 95%.
    names = ["alpha", "beta", ("rho_N", "muon"), ("rho_D", "muon"), ("rho_D", "lion")]
    truth = {"alpha": TRUTH["alpha"], "beta": TRUTH["beta"], ("rho_N", "muon"): RHO["muon"][0],
             ("rho_D", "muon"): RHO["muon"][1], ("rho_D", "lion"): RHO["lion"][1]}
    covered = {n: 0 for n in names}
    estimates, widths = [], []
    draws = 40
    for draw in range(draws):
        fit = fit_shared(synthetic_table(seed=100 + draw, noise=0.004), bootstrap=200, seed=draw)
        for n in names:
            lo, hi = fit.ci[n]
            covered[n] += lo <= truth[n] <= hi
        estimates.append(fit.params["alpha"])
        widths.append(fit.ci["alpha"][1] - fit.ci["alpha"][0])
    for n in names:
        assert covered[n] >= 33, (n, covered)
    # Not covering by being wide: the mean interval width matches the spread of the estimate
    # over independent data sets (a 95% normal interval is 3.92 standard deviations wide).
    width_ratio = np.mean(widths) / (3.92 * np.std(estimates, ddof=1))
    print(f"coverage over {draws} draws: {covered}; width ratio {width_ratio:.2f}")
    assert 0.6 < width_ratio < 2.0, width_ratio


def test_bootstrap_resamples_whole_cells_within_each_optimizer():
    table = synthetic_table(seeds_per_cell=2)
    counts = cell_bootstrap_counts(table, 50, seed=0)
    keys = table.cell_keys()
    for opt in RHO:
        m = table.optimizer == opt
        assert counts[:, m].sum(axis=1) == pytest.approx(np.full(50, m.sum()))  # 25 cells x 2 seeds drawn
    for i in range(0, len(table), 2):  # both seeds of a cell always share a count
        assert keys[i] == keys[i + 1]
        assert np.array_equal(counts[:, i], counts[:, i + 1])


def test_nested_variants_fix_the_other_rho_to_one():
    table = synthetic_table(noise=0.0)
    only_D = fit_shared(table, variant="rho_D")
    only_N = fit_shared(table, variant="rho_N")
    assert all(only_D.params["rho_N", o] == 1.0 for o in RHO)
    assert all(only_N.params["rho_D", o] == 1.0 for o in RHO)
    full = fit_shared(table, variant="full")
    # The truth has both rho's; the restricted laws must fit worse.
    assert only_D.solves[None].objective_value > full.solves[None].objective_value
    assert only_N.solves[None].objective_value > full.solves[None].objective_value


def test_separate_fits_and_conditioning_side_by_side():
    table = synthetic_table(noise=0.0)
    sep = fit_separate(table)
    for opt, (rho_N, rho_D) in RHO.items():
        assert sep.param("alpha", opt) == pytest.approx(TRUTH["alpha"], rel=1e-3)
        assert sep.param("A", opt) == pytest.approx(TRUTH["A"] * rho_N ** -TRUTH["alpha"], rel=1e-3)
        cond = sep.solves[opt]
        assert cond.condition_number > 1 and len(cond.correlation) == 5
    shared = fit_shared(table)
    assert len(shared.solves[None].correlation) == 2 + 1 + 3 + 3


def test_compute_multiplier_matches_brute_force_frontier():
    table = synthetic_table(noise=0.0)
    table.step_cost[table.optimizer == "muon"] = 1.3  # muon steps cost 30% more
    fit = fit_compute(table, cost="flops")
    k = fit.cost_per_ND
    assert k["muon"] == pytest.approx(6 * 1.3) and k["adamw"] == pytest.approx(6.0)

    def best_loss(opt, C):
        # minimise the true law over log N with D = C / (k N)
        res = minimize_scalar(lambda logN: true_loss(np.exp(logN), C / (k[opt] * np.exp(logN)), opt),
                              bounds=(np.log(1e5), np.log(1e13)), method="bounded", options={"xatol": 1e-10})
        return res.fun

    m = fit.params["compute_multiplier", "muon"]
    assert m == pytest.approx(RHO["muon"][0] * RHO["muon"][1] / 1.3, rel=1e-3)
    C = 1e19
    assert best_loss("muon", C) == pytest.approx(best_loss("adamw", m * C), rel=1e-7)
    alpha, beta, E, A, B = fit.laws["muon"]
    N_opt, D_opt, L_opt = compute_optimal(alpha, beta, E, A, B, k["muon"], C)
    assert L_opt == pytest.approx(best_loss("muon", C), rel=1e-7)


def test_compute_allocation_outside_data_range_warns():
    table = synthetic_table(noise=0.0)
    # Give the data only long runs (80 tokens/param): the optimum lies at fewer tokens per param.
    long_only = table.subset(np.isclose(table.D / table.N, 80.0) | np.isclose(table.D / table.N, 40.0))
    fit = fit_compute(long_only, n_budgets=3)
    assert [w for w in fit.warnings if w.kind == WarningKind.EXTRAPOLATION and "extrapolation" in w.message]
    rows = fit.allocation["adamw"]["budgets"]
    assert any(r["extrapolated"] for r in rows)


def test_holdout_largest_size_predicts_held_out_cells():
    table = synthetic_table(noise=0.0)
    result = holdout_check(table, "largest")
    assert result.n_held_out == 15  # 3 optimizers x 5 token budgets at the largest N
    for cell in result.cells:
        assert cell["N"] == pytest.approx(table.N.max())
        assert cell["shared"] == pytest.approx(cell["actual"], rel=1e-5)
        assert cell["separate"] == pytest.approx(cell["actual"], rel=1e-3)
    assert set(result.error) == {"separate", "shared", "shared_rho_D", "shared_rho_N"}


def test_wallclock_cost_basis_and_budget_outside_the_data_warns():
    table = synthetic_table(noise=0.0)
    with pytest.raises(UserError, match="no wallclock_s .* use --cost flops"):
        fit_compute(table, cost="wallclock")
    # muon twice as slow per N*D as adamw and lion
    table.wallclock_s[:] = 1e-15 * table.N * table.D * np.where(table.optimizer == "muon", 2.0, 1.0)
    fit = fit_compute(table, cost="wallclock")
    assert fit.warnings
    assert fit.params["cost_per_ND", "muon"] == pytest.approx(2e-15)
    assert fit.params["compute_multiplier", "muon"] == pytest.approx(0.85 * 1.6 / 2.0, rel=1e-3)
    assert check_budget(fit, table, 1e-15 * 1e7 * 1e9, "adamw") == []
    outside = check_budget(fit, table, 1e6, "adamw")  # data span ~0.5 s to ~7,000 s
    assert outside and "outside the data's cost range" in outside[0].message


def test_result_serialises_and_summarises():
    import json

    fit = fit_shared(synthetic_table(), bootstrap=20)
    assert fit.objective == "huber_log" and fit.reference == "adamw" and fit.n_basis == "as_given"
    doc = json.loads(json.dumps(fit.to_json()))
    muon = doc["optimizers"]["muon"]
    assert muon["rho_D_ci"][0] <= muon["rho_D"] <= muon["rho_D_ci"][1]
    text = fit.summary()
    assert "rho_D/muon" in text and "law=shared" in text and "objective=huber_log" in text
    with pytest.raises(KeyError, match="'sgd' not in this fit"):
        fit.predict(1e8, 1e9, "sgd")


def test_infinite_bootstrap_values_widen_the_interval_instead_of_vanishing():
    from optlaw.fit.result import percentile_intervals

    values = np.concatenate([np.linspace(1.0, 2.0, 90), np.full(10, np.inf)])
    lo, hi = percentile_intervals({"N_opt": values})["N_opt"]
    assert lo == pytest.approx(1.0, abs=0.05) and hi == np.inf
    lo, hi = percentile_intervals({"x": np.linspace(1.0, 2.0, 101)})["x"]
    assert (lo, hi) == pytest.approx((1.025, 1.975))


def test_degenerate_data_gives_no_numpy_noise_in_the_report():
    # Loss nearly flat in N (as in a tiny CPU sweep): coefficients hit zero in bootstrap
    # replicates. The fit must not leak numpy's overflow/divide warnings into its notes.
    from optlaw.fit.study import run_study

    rng = np.random.default_rng(0)
    rows = []
    for opt, shift in (("adamw", 1.0), ("muon", 0.97), ("soap", 0.98)):
        for N in (1e5, 2.5e5, 4e5):
            for D in (1.3e5, 2.6e5, 5.2e5):
                rows.append((opt, N, D, shift * (3.0 + 8.0 / D ** 0.15) * np.exp(0.01 * rng.standard_normal())))
    opt, N, D, loss = zip(*rows)
    table = RunTable.from_columns(opt, N, D, loss, flops=[6 * n * d for n, d in zip(N, D)])
    doc = run_study(table, law="compute", bootstrap=300, holdout=None).document
    assert not [w for w in doc["warnings"] if "encountered" in w], doc["warnings"]
