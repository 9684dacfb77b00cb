"""The quadratic proxy: exact loss split, closed-form curves, one-step natural gradient, theory."""

import numpy as np
import pytest

from optlaw.proxy.dynamics import modes_from_curvature, preconditioner_matrix, simulate_losses, tune_step_size
from optlaw.proxy.optimizers import OPTIMIZERS
from optlaw.proxy.quadratic import QuadraticProblem
from optlaw.proxy.quadratic_theory import predicted_exponents
from optlaw.proxy.random_features import RandomFeatureProblem

MULTS = [0.25, 0.5, 1.0, 1.5, 1.9]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("damping", [0.0, 0.05])
def test_decomposition_sums_to_total_loss(optimizer, damping):
    problem = QuadraticProblem(feature_dim=3000, s=1.3, source_r=0.3, irreducible_loss=0.05)
    N, steps = 200, 17
    parts = problem.parts(N, steps, optimizer, damping, MULTS)
    # The total is evaluated independently: iterate the update explicitly, then L(theta).
    theta = problem.iterate(N, steps, "sign" if optimizer == "diag" else optimizer, damping, parts.eta)
    assert problem.loss(theta) == pytest.approx(parts.total, rel=1e-10, abs=1e-14)
    tail = 0.5 * np.sum(problem.eigenvalues[N:] * problem.theta_star[N:] ** 2)
    assert parts.approximation == pytest.approx(tail, rel=1e-12)
    assert parts.irreducible == 0.05
    assert parts.optimization > 0 or optimizer == "ngd"


def _small_rf(N=40, seed=3):
    problem = RandomFeatureProblem(input_dim=160, s=1.2, source_r=0.3, max_features=N, seed=seed)
    H, c = problem.curvature(N)
    constant = 0.5  # loss at theta = 0: half the unit target energy
    return H, c, constant


@pytest.mark.parametrize("optimizer", ["gd", "diag", "sign", "ngd"])
def test_closed_form_curve_matches_explicit_iteration(optimizer):
    """GD (and the preconditioned rules) on a dense quadratic follow the eigenbasis formula step by step."""
    H, c, constant = _small_rf()
    modes = modes_from_curvature(H, c, optimizer, damping=1e-3)
    eta = 1.5 / modes.nu.max()
    explicit = simulate_losses(H, c, preconditioner_matrix(H, optimizer, 1e-3), eta, 60, constant)
    floor = constant - 0.5 * modes.a.sum()
    closed = floor + modes.excess(np.arange(61), eta)
    np.testing.assert_allclose(explicit, closed, rtol=1e-9, atol=1e-13)
    assert explicit[-1] < explicit[0]


def test_natural_gradient_with_exact_curvature_converges_in_one_step():
    # Full-rank dense problem: N random features in more input dimensions.
    H, c, constant = _small_rf(N=40)
    assert np.linalg.matrix_rank(H) == 40
    losses = simulate_losses(H, c, preconditioner_matrix(H, "ngd", 0.0), 1.0, 3, constant)
    optimum = constant - 0.5 * c @ np.linalg.solve(H, c)
    assert losses[1] == pytest.approx(optimum, rel=1e-9)
    assert losses[0] - optimum > 0.01  # there was something to learn
    modes = modes_from_curvature(H, c, "ngd", 0.0)
    assert tune_step_size(modes, 1, MULTS).eta_multiplier == 1.0
    assert modes.excess(1, 1.0) == pytest.approx(0.0, abs=1e-12)
    # Whereas GD is far from the optimum after one step.
    gd = simulate_losses(H, c, np.eye(40), 1.0 / np.linalg.eigvalsh(H).max(), 1, constant)
    assert gd[1] - optimum > 0.1 * (losses[0] - optimum)


def test_quadratic_full_model_ngd_reaches_floor_in_one_step():
    problem = QuadraticProblem(feature_dim=500, s=1.5, source_r=0.25, irreducible_loss=0.1)
    parts = problem.parts(500, 1, "ngd", 0.0, MULTS)
    assert parts.total == pytest.approx(0.1, abs=1e-12)


def test_part_exponents_follow_the_closed_form_predictions():
    s, r = 1.5, 0.25
    problem = QuadraticProblem(feature_dim=2**20, s=s, source_r=r)
    N = np.array([64, 128, 256, 512, 1024])
    approx = [problem.approximation(n) for n in N]
    assert -np.polyfit(np.log(N), np.log(approx), 1)[0] == pytest.approx(predicted_exponents("gd", s, r, 0)["alpha"],
                                                                           abs=0.01)
    D = np.array([64, 128, 256, 512, 1024])
    for name, tol in (("gd", 0.04), ("kron", 0.06)):
        opt = [problem.parts(2**16, int(d), name, 0.0, MULTS).optimization for d in D]
        beta = -np.polyfit(np.log(D), np.log(opt), 1)[0]
        assert beta == pytest.approx(predicted_exponents(name, s, r, 0)["beta"], abs=tol)
    # Damped: below the damping every optimizer is GD with a rescaled step -> GD's exponent.
    opt = [problem.parts(2**16, int(d), "ngd", 0.1, MULTS).optimization for d in D]
    assert -np.polyfit(np.log(D), np.log(opt), 1)[0] == pytest.approx(2 * r, abs=0.06)


def test_damped_preconditioners_are_gd_on_a_rescaled_clock():
    """Shared exponents: at long budgets a damped preconditioner equals GD run rho_D times longer."""
    from optlaw.proxy.quadratic_study import rho_D_from_parts

    cfg = {"feature_dim": 2**18, "s": 1.5, "source_r": 0.25, "irreducible_loss": 0.0, "D_values": [4096],
           "step_size_multipliers": MULTS}
    for name in ("kron", "sign", "ngd"):
        predicted = predicted_exponents(name, 1.5, 0.25, 0.1)["rho_D"]
        assert rho_D_from_parts(cfg, name, "gd", 0.1) == pytest.approx(predicted, rel=0.02)
    # Undamped, no constant clock factor exists: the ratio drifts with D (the exponent changed).
    short = rho_D_from_parts(dict(cfg, D_values=[4]), "kron", "gd", 0.0)
    long = rho_D_from_parts(dict(cfg, D_values=[256]), "kron", "gd", 0.0)
    assert long > 2 * short


def test_closed_form_mismatch_is_a_finding_with_its_cause():
    from optlaw.proxy.quadratic_study import closed_form_findings

    def row(opt, beta_ci, beta_part, rho_ci=None, rho_pred=None, rho_part=None):
        return {"optimizer": opt, "alpha_fit": 0.76, "alpha_ci": [0.7, 0.8], "alpha_pred": 0.75, "alpha_part": 0.749,
                "beta_fit": sum(beta_ci) / 2, "beta_ci": beta_ci, "beta_pred": 0.5, "beta_part": beta_part,
                "rho_D_fit": None if rho_ci is None else sum(rho_ci) / 2, "rho_D_ci": rho_ci, "rho_D_pred": rho_pred,
                "rho_D_part": rho_part}

    # damped, as measured (docs/proxy.md): the beta intervals exclude 0.5 while the exact parts follow it
    rows = [row("gd", [0.54, 0.77], 0.521), row("kron", [0.57, 0.80], 0.531, [1.22, 1.84], 1.821, 1.821),
            row("ngd", [0.45, 1.46], 0.545, [5.34, 14.4], 11.0, 11.0)]
    findings = closed_form_findings(rows, 0.1, "gd")
    assert [r["beta_matches"] for r in rows] == [False, False, True]
    assert [r["rho_D_matches"] for r in rows] == [None, True, True]
    assert len(findings) == 1 and findings[0].startswith("beta: the fitted 95% interval excludes the closed form "
                                                         "for 2 of 3 fits")
    assert "the theory holds and the cause is the fitted form" in findings[0]
    # parts that do not follow the closed form point to the grid, not to the fitted form
    rows = [row("gd", [0.64, 0.77], 0.70)]
    assert "not in the asymptotic regime" in closed_form_findings(rows, 0.1, "gd")[0]
    # undamped: the shared law is said not to exist, whatever it fits
    undamped = closed_form_findings([row("gd", [0.4, 0.6], 0.52)], 0.0, "gd")
    assert undamped[0].startswith("No shared-exponent law exists in this regime")


def test_refit_where_the_additive_law_holds_matches_the_closed_form():
    # The grid's fitted beta intervals exclude 2r in every damped fit (overlapping error terms, short
    # horizons). Where the additive law holds (exact parts recombined additively, long horizon) the same
    # fitter's intervals hold the closed-form beta and rho_D.
    from optlaw.config import compose, to_plain
    from optlaw.proxy.quadratic_study import additive_regime_refit, check_study_config

    cfg = check_study_config(to_plain(compose("proxy/quadratic", [
        "optimizers=[gd,kron,ngd]", "N_values=[16,32,64,128,256]", "D_values=[4,64,256,1024,4096]",
        "feature_dim=65536", "bootstrap=40", "progress=false"])))
    refit = additive_regime_refit(cfg, 0.1, ["gd", "kron", "ngd"])
    assert refit["D_values"] == [256, 1024, 4096]
    rows = {r["optimizer"]: r for r in refit["rows"]}
    assert all(r["beta_matches"] for r in rows.values()), refit["finding"]
    assert rows["kron"]["rho_D_matches"] and rows["ngd"]["rho_D_matches"], refit["finding"]
    assert rows["ngd"]["rho_D_fit"] == pytest.approx(11.0, rel=0.02)
    assert "holds the closed form for beta 3 of 3, rho_D 2 of 2" in refit["finding"]
    # undamped: the exponents differ per optimizer (kron 8r/3) and the refit finds them; no shared law
    undamped = {r["optimizer"]: r for r in additive_regime_refit(cfg, 0.0, ["gd", "kron"])["rows"]}
    assert undamped["kron"]["beta_matches"] and undamped["kron"]["beta_pred"] == pytest.approx(2 / 3)
    assert undamped["kron"]["rho_D_fit"] is None
    # a grid without long horizons says so instead of fitting
    short = additive_regime_refit(dict(cfg, D_values=[4, 16, 64, 256]), 0.1, ["gd", "kron"])
    assert short["rows"] == [] and "skipped" in short["finding"]


def test_refit_without_bootstrap_reports_values_only():
    from optlaw.proxy.quadratic_study import _refit_finding

    rows = [{"optimizer": "gd", "alpha_fit": 0.737, "alpha_ci": None, "alpha_pred": 0.75, "alpha_matches": None,
             "beta_fit": 0.5001, "beta_ci": None, "beta_pred": 0.5, "beta_matches": None,
             "rho_D_fit": 1.0, "rho_D_ci": None, "rho_D_pred": 1.0, "rho_D_matches": None}]
    text = _refit_finding(rows, {"min_steps": 256, "N_values": [16]}, 0.1)
    assert text.endswith("without intervals (bootstrap = 0): gd beta 0.500 vs 0.500.")
