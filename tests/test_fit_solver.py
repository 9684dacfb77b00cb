"""The solver: published Chinchilla fit reproduced, objectives, agreement with Hoffmann's L-BFGS."""

from __future__ import annotations

import numpy as np
import pytest

from optlaw.fit import fit_separate, load_csv
from optlaw.fit import solver
from optlaw.fit.table import RunTable


def chinchilla_table(reference_data) -> RunTable:
    """The 245 Chinchilla runs minus the 5 highest-loss ones, D = C / (6N) (reference-data README)."""
    table = load_csv(reference_data / "epoch_chinchilla_svg_extracted_data.csv",
                     columns={"N": "Model Size", "flops": "Training FLOP"}, default_optimizer="chinchilla",
                     n_basis="total")
    keep = np.zeros(len(table), dtype=bool)
    keep[np.argsort(table.loss)[:-5]] = True
    return table.subset(keep)


def test_huber_log_fit_reproduces_published_chinchilla_fit(reference_data):
    table = chinchilla_table(reference_data)
    assert len(table) == 240
    fit = fit_separate(table, objective="huber_log")
    published = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672}
    for name, value in published.items():
        got = fit.param(name, "chinchilla")
        assert float(f"{got:.3g}") == float(f"{value:.3g}"), (name, got, value)
    assert fit.solves["chinchilla"].on_bound == () and fit.converged


def test_squared_error_objective_gives_larger_beta(reference_data):
    fit = fit_separate(chinchilla_table(reference_data), objective="squared")
    assert fit.objective == "squared"
    assert 0.41 < fit.param("beta", "chinchilla") < 0.45  # README: "about 0.43"


def _problem(table: RunTable, objective: str) -> solver.Problem:
    n = len(table)
    return solver.Problem(np.log(table.N), np.log(table.D), table.loss,
                          solver.Structure(np.zeros(n, int), np.zeros(n, int), 1, 1), objective)


def _noisy_single_law(seed=3, n_sizes=6, n_tokens=6, noise=0.01) -> RunTable:
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, n_sizes), np.geomspace(2e8, 2e11, n_tokens))
    N, D = N.ravel(), D.ravel()
    loss = (2.0 + 300 / N ** 0.3 + 900 / D ** 0.28) * np.exp(noise * rng.standard_normal(N.size))
    return RunTable.from_columns(["x"] * N.size, N, D, loss)


def test_variable_projection_is_no_worse_than_hoffmann_multistart():
    # 12 random starts of Hoffmann's 4,500 keep this fast (the full grid: scripts/bench/bench_fit.py).
    p = _problem(_noisy_single_law(), "huber_log")
    ours = solver.solve(p)
    starts = solver.hoffmann_grid()[np.random.default_rng(0).choice(4500, 12, replace=False)]
    theirs = solver.hoffmann_lbfgs(p, starts)
    assert ours.objective_value <= theirs.objective_value * (1 + 1e-7)


def test_inner_projection_is_exact_for_huber_log():
    # At fixed exponents the projected coefficients must beat any nearby non-negative point.
    p = _problem(_noisy_single_law(noise=0.02), "huber_log")
    X = solver.design(0.3, 0.28, p)
    w = np.ones(p.n)
    c = solver.project_coefficients(X, p, w)
    best = solver.loss_terms(X @ c, p).sum()
    rng = np.random.default_rng(0)
    for _ in range(200):
        trial = np.maximum(c * np.exp(1e-3 * rng.standard_normal(c.size)), 0)
        assert solver.loss_terms(X @ trial, p).sum() >= best * (1 - 1e-9)


def test_solution_on_exponent_bound_is_flagged():
    # Loss flat in D: beta runs to the lower end of its search range (or B to zero).
    table = _noisy_single_law(noise=0.0)
    flat = RunTable.from_columns(table.optimizer, table.N, table.D, 2.0 + 300 / table.N ** 0.3)
    sol = solver.solve(_problem(flat, "squared"))
    assert sol.on_bound, (sol.alpha, sol.beta, sol.coef)


def test_noise_free_data_recovered_exactly():
    table = _noisy_single_law(noise=0.0)
    fit = fit_separate(table)
    for name, value in {"E": 2.0, "A": 300.0, "B": 900.0, "alpha": 0.3, "beta": 0.28}.items():
        assert fit.param(name, "x") == pytest.approx(value, rel=1e-4)


@pytest.mark.parametrize("variant", ["full", "rho_D", "rho_N"])
def test_block_elimination_solves_the_same_system_as_dense_lu(variant):
    # The shared law's arrowhead solve must equal the plain P x P solve, held coordinates included.
    from optlaw.fit.normal_equations import BlockSystem, DenseSystem, NormalEquations

    rng = np.random.default_rng(1)
    n, groups = 60, 5
    g, zeros = np.arange(n) % groups, np.zeros(n, int)
    a, b, n_a, n_b = {"full": (g, g, groups, groups), "rho_D": (zeros, g, 1, groups),
                      "rho_N": (g, zeros, groups, 1)}[variant]
    eq = NormalEquations(n, a, b, n_a, n_b)
    assert eq.block
    R = 6
    J5, u, r = rng.normal(size=(5, R, n)), rng.random((R, n)), rng.normal(size=(R, n))
    free = np.ones((R, eq.P), dtype=bool)
    free[0, 3] = free[1, 2] = free[2, -1] = False      # an A, E, a B held at zero
    sums, grads = eq.combo_sums(J5, u, r)
    eq._dense_maps()
    rows, mu = np.arange(R), rng.random(R) * 1e-2
    dense = DenseSystem(eq, sums, grads, free).step(rows, mu)
    block = BlockSystem(eq, sums, grads, free).step(rows, mu)
    np.testing.assert_allclose(block, dense, rtol=1e-9, atol=1e-12)
    assert np.all(block[~free] == 0.0)


@pytest.mark.parametrize("objective", ["huber_log", "squared"])
@pytest.mark.parametrize("variant", ["full", "rho_D", "rho_N", "nested"])
def test_sums_from_shares_equal_the_slot_products(objective, variant):
    # The polish sums its normal equations from the (E, A, B) shares with per-point factors
    # (log N, log D, ...); they must equal the plain sums of u J_a J_b and u J_a r.
    from optlaw.fit.normal_equations import NormalEquations

    rng = np.random.default_rng(2)
    n, groups = 48, 4
    g, zeros = np.arange(n) % groups, np.zeros(n, int)
    a, b, n_a, n_b = {"full": (g, g, groups, groups), "rho_D": (zeros, g, 1, groups),
                      "rho_N": (g, zeros, groups, 1), "nested": (g, g // 2, groups, 2)}[variant]
    N, D = np.exp(rng.uniform(17, 21, n)), np.exp(rng.uniform(19, 24, n))
    loss = 2.0 + 300 / N ** 0.3 + 900 / D ** 0.28
    p = solver.Problem(np.log(N), np.log(D), loss * np.exp(0.01 * rng.standard_normal(n)),
                       solver.Structure(a, b, n_a, n_b), objective, delta=0.01)
    eq = NormalEquations(n, a, b, n_a, n_b, p.logN, p.logD)
    R = 5
    truth = np.r_[0.3, 0.28, np.log(2.0), np.full(n_a, np.log(300.0)), np.full(n_b, np.log(900.0))]
    theta = truth + 0.01 * rng.standard_normal((R, truth.size))
    w = rng.integers(0, 3, (R, n)).astype(float)
    plain = eq.combo_sums(*solver.gauss_newton_terms(theta, p, w))
    shares = eq.share_sums(*solver.gauss_newton_shares(theta, p, w))
    for x, y in zip(plain, shares):
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-12 * np.abs(x).max())
    # the model itself: u r is w psi(residual); u is w inside delta, k delta / |residual| times w outside
    S, u, r = solver.gauss_newton_shares(theta, p, w)
    pred = np.stack([solver.predict(t[0], t[1], np.exp(t[2:]), p) for t in theta])
    if objective == "huber_log":
        res, k = np.log(pred) - p.logL, solver.HUBER_OUTSIDE_CURVATURE
        assert 0 < np.mean(np.abs(res) < p.delta) < 1
        np.testing.assert_allclose(u * r, w * np.clip(res, -p.delta, p.delta), rtol=1e-12, atol=1e-18)
        np.testing.assert_allclose(u, w * np.where(np.abs(res) < p.delta, 1.0, k * p.delta / np.abs(res)), rtol=1e-12)
        np.testing.assert_allclose(S[1], np.exp(theta[:, 3:3 + n_a])[:, a] * N ** -theta[:, :1] / pred, rtol=1e-12)
    else:
        np.testing.assert_allclose(r, pred - p.loss, rtol=1e-12, atol=1e-15)


def test_whole_array_huber_is_scipys_bit_for_bit():
    # The objective's Huber is written with whole-array numpy operations for speed; it must
    # give scipy.special.huber's values exactly, signs of zero and non-finite inputs included.
    from scipy.special import huber

    rng = np.random.default_rng(0)
    r = rng.standard_normal(20000) * 10.0 ** rng.uniform(-8, 2, 20000)
    r = np.concatenate([r, [0.0, -0.0, 1e-3, -1e-3, np.nextafter(1e-3, 1), np.inf, -np.inf, np.nan, 1e-310, -1e-310]])
    expected = huber(1e-3, r)
    got = solver._huber_whole(1e-3, r.copy())
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_chunked_sums_equal_whole_batch_sums():
    # Above SUMS_CHUNK rows the Gauss-Newton sums are built chunk by chunk (cache-sized
    # temporaries); rows are independent, so the sums must match the one-batch ones.
    from optlaw.fit.normal_equations import NormalEquations

    rng = np.random.default_rng(3)
    n, groups = 60, 5
    g = np.arange(n) % groups
    N, D = np.exp(rng.uniform(17, 21, n)), np.exp(rng.uniform(19, 24, n))
    loss = (2.0 + 300 / N ** 0.3 + 900 / D ** 0.28) * np.exp(0.01 * rng.standard_normal(n))
    p = solver.Problem(np.log(N), np.log(D), loss, solver.Structure(g, g, groups, groups), "huber_log", delta=0.01)
    eq = NormalEquations(n, g, g, groups, groups, p.logN, p.logD)
    R = 2 * solver.SUMS_CHUNK + 7
    truth = np.r_[0.3, 0.28, np.log(2.0), np.full(groups, np.log(300.0)), np.full(groups, np.log(900.0))]
    theta = truth + 0.02 * rng.standard_normal((R, truth.size))
    w = rng.integers(0, 3, (R, n)).astype(float)
    whole = eq.share_sums(*solver.gauss_newton_shares(theta, p, w))
    chunked = solver._share_sums_chunked(theta, p, w, eq)
    for x, y in zip(whole, chunked):
        assert y.shape == x.shape
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-14 * np.abs(x).max())
    small = solver._share_sums_chunked(theta[:5], p, w[:5], eq)
    for x, y in zip(eq.share_sums(*solver.gauss_newton_shares(theta[:5], p, w[:5])), small):
        assert np.array_equal(x, y)


def test_bootstrap_refits_reach_the_optimum_of_a_fresh_solve():
    # Warm-started batched refits must end where an independent global fit of the same
    # resampled data ends (same objective up to solver tolerance), not just near the start.
    from optlaw.fit.laws import _problem as law_problem, _shared_structure, cell_bootstrap_counts
    from optlaw.fit.synthetic import synthetic_table

    table = synthetic_table(seed=2, noise=0.01)
    order = ["adamw", "lion", "muon"]
    p = law_problem(table, _shared_structure(table, order, "adamw", "full"), "huber_log")
    sol = solver.solve(p)
    counts = cell_bootstrap_counts(table, 6, seed=4)
    from optlaw.fit.bootstrap import refit

    theta = refit(sol, p, counts).theta
    refit_f = solver.loss_terms(solver._predict_batch(theta, p)[0], p, counts).sum(axis=1)
    for i in range(len(counts)):
        fresh = solver.solve(p, weights=counts[i])
        assert refit_f[i] <= fresh.objective_value * (1 + 1e-5), (i, refit_f[i], fresh.objective_value)
