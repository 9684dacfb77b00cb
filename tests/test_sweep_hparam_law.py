"""Hyperparameter laws (optlaw.sweep.hparam_law) on synthetic loss-against-learning-rate curves with known optima."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optlaw.sweep.hparam_law import LawCell, curve_minimum, fit_law, identifiable_terms

TRUE = {"c": 2.0, "a": -0.35, "b": -0.15}


def optimum(N: float, D: float) -> float:
    return math.exp(TRUE["c"] + TRUE["a"] * math.log(N) + TRUE["b"] * math.log(D))


def tuned_cells(rng, sizes, budgets, noise=0.003, curvature=0.02):
    """Each cell as a tuning sweep sees it: a factor-2 grid around a start within one step of the optimum,
    losses from a parabola in log lr plus noise, the minimum interpolated."""
    cells = []
    for N in sizes:
        for D in budgets:
            true = math.log(optimum(N, D))
            centre = round(true / math.log(2) + rng.uniform(-0.5, 0.5))
            values = [2.0 ** (centre + k) for k in range(-2, 3)]
            losses = [3.0 + curvature * (math.log(v) - true) ** 2 + rng.normal(0, noise) for v in values]
            cells.append(LawCell(N, D, curve_minimum(values, losses).value, cell=f"N={N:g} D={D:g}"))
    return cells


def test_curve_minimum_is_the_vertex_of_the_parabola_in_log_value():
    values = [0.25, 0.5, 1.0, 2.0]
    losses = [3 + (math.log(v) - math.log(0.7)) ** 2 for v in values]
    found = curve_minimum(values, losses)
    assert found.interpolated and found.value == pytest.approx(0.7, rel=1e-9) and found.best_tried == 0.5
    assert found.loss == pytest.approx(3.0, abs=1e-12)


def test_curve_minimum_falls_back_to_the_best_value_tried():
    at_edge = curve_minimum([1, 2, 4], [3.0, 2.9, 2.8])
    assert not at_edge.interpolated and at_edge.value == 4
    next_to_diverged = curve_minimum([1, 2, 4], [3.0, 2.9, math.inf])
    assert not next_to_diverged.interpolated and next_to_diverged.value == 2
    with pytest.raises(ValueError, match="diverged"):
        curve_minimum([1, 2], [math.inf, math.inf])


def test_the_law_recovers_known_exponents_within_its_intervals():
    rng = np.random.default_rng(0)
    cells = tuned_cells(rng, [1e5, 3e5, 1e6], [1e7, 3e7, 1e8])
    law = fit_law(cells, "optimizer.lr_mult", "adamw", bootstrap=1000, seed=0)
    assert law.terms == ("c", "a", "b") and law.bootstrap_used > 900
    for name in ("a", "b"):
        low, high = law.ci[name]
        assert low < TRUE[name] < high, (name, law.summary())
        assert high - low < 0.25  # informative, not merely wide
    N, D = 3e6, 3e8  # beyond the cells: the interval still holds the true optimum
    low, high = law.interval(N, D)
    assert low < optimum(N, D) < high
    assert law.predict(N, D) == pytest.approx(optimum(N, D), rel=0.3)
    doc = law.to_json()
    assert doc["form"] == "log h* = c + a log N + b log D" and doc["n_cells"] == 9 and len(doc["cells"]) == 9
    assert doc["residual_dof"] == 6 and "unreliable" not in law.summary()


def test_the_intervals_cover_the_true_exponents_most_of_the_time():
    # Percentile-bootstrap 95% intervals over 9 cells are a little narrow (measured ~85-95% coverage
    # here); a law whose intervals ignored the cells' scatter would cover far less often.
    rng = np.random.default_rng(1)
    hits, repeats = {"a": 0, "b": 0}, 40
    for r in range(repeats):
        law = fit_law(tuned_cells(rng, [1e5, 3e5, 1e6], [1e7, 3e7, 1e8]), "lr", "adamw", bootstrap=300, seed=r)
        for name in hits:
            hits[name] += law.ci[name][0] <= TRUE[name] <= law.ci[name][1]
    assert min(hits.values()) >= 0.75 * repeats, hits


def test_terms_the_cells_cannot_identify_are_left_out():
    N = np.array([1e5, 3e5, 1e5, 3e5])
    assert identifiable_terms(N, np.array([1e7, 1e7, 3e7, 3e7])) == ("c", "a", "b")
    assert identifiable_terms(N, np.array([1e7] * 4)) == ("c", "a")      # one budget
    assert identifiable_terms(N, 20 * N) == ("c", "a")                   # D in proportion to N
    assert identifiable_terms(np.array([1e5] * 2), np.array([1e7, 3e7])) == ("c", "b")
    cells = [LawCell(1e5, 1e7, 1.0), LawCell(4e5, 1e7, 0.5)]
    law = fit_law(cells, "lr", "muon", bootstrap=50)
    assert law.terms == ("c", "a") and law.coef["b"] == 0.0 and law.coef["a"] == pytest.approx(-0.5)
    assert "b = 0 (not identified)" in law.summary() and "intervals unreliable" in law.summary()
    assert law.residual_dof == 0 and law.to_json()["residual_dof"] == 0
    with pytest.raises(ValueError, match="no tuned cells"):
        fit_law([], "lr", "muon")


def test_law_terms_limit_the_fit_to_the_allowed_terms():
    N = np.array([1e5, 3e5, 1e5, 3e5])
    D = np.array([1e7, 1e7, 3e7, 3e7])
    assert identifiable_terms(N, D, ("c", "b")) == ("c", "b")
    assert identifiable_terms(N, np.array([1e7] * 4), ("c", "b")) == ("c",)  # one budget: only the constant
    # The optimum depends on D alone; N varies over a narrow range: with (c, b) nothing is extrapolated in N.
    cells = [LawCell(n, d, 4.0 * (d / 1e7) ** -0.3) for n, d in zip(N, D)]
    law = fit_law(cells, "lr", "adamw", bootstrap=50, allowed_terms=("c", "b"))
    assert law.terms == ("c", "b") and law.coef["a"] == 0.0 and law.coef["b"] == pytest.approx(-0.3)
    assert law.predict(1e7, 1e7) == pytest.approx(4.0)
    assert "a = 0 (left out: law_terms)" in law.summary()


def test_law_terms_must_include_the_constant_and_name_only_c_a_b():
    from optlaw.config.tuning import TuningConfig
    from optlaw.errors import ConfigError

    TuningConfig(enabled=True, law_terms=["c", "b"]).check()
    for bad in (["b"], ["c", "x"]):
        with pytest.raises(ConfigError, match="tuning.law_terms"):
            TuningConfig(enabled=True, law_terms=bad).check()
