"""Alpha fits and the spectral diagnostic recover exponents planted in synthetic data."""

import numpy as np
import pytest

from optlaw.errors import UserError
from optlaw.proxy.alpha_fit import bootstrap_alpha, fit_alpha_free_floor, fit_alpha_known_floor
from optlaw.proxy.diagnostic import estimate_s, interpolate_shift, predict_alpha_shift, spectrum_from_samples

N = np.array([32, 64, 128, 256, 512, 1024, 2048])


def _synthetic(alpha, floor, n_seeds=6, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    clean = floor + 3.0 * N.astype(float) ** (-alpha)
    return clean * np.exp(noise * rng.standard_normal((n_seeds, len(N))))


def test_alpha_recovered_with_known_floor_and_interval_covers_it():
    losses = _synthetic(0.4, 0.2)
    fit = bootstrap_alpha(N, losses, irreducible=0.2, n_boot=300)
    assert fit.alpha == pytest.approx(0.4, abs=0.03)
    assert fit.ci[0] < 0.4 < fit.ci[1]
    assert fit.ci[1] - fit.ci[0] < 0.1
    # A different planted exponent is told apart.
    other = bootstrap_alpha(N, _synthetic(0.6, 0.2), irreducible=0.2, n_boot=300)
    assert other.ci[0] > fit.ci[1]


def test_alpha_recovered_with_free_floor():
    clean = 0.2 + 3.0 * N.astype(float) ** -0.35
    fit = fit_alpha_free_floor(N, clean)
    assert fit.alpha == pytest.approx(0.35, abs=0.01)
    assert fit.irreducible == pytest.approx(0.2, rel=0.05)
    # Ignoring the floor (treating it as zero) biases alpha low: why the floor is handled explicitly.
    assert fit_alpha_known_floor(N, clean, 0.0).alpha < 0.25


def test_alpha_fit_rejects_bad_input():
    with pytest.raises(UserError):
        fit_alpha_known_floor([10, 10], [1.0, 0.5])
    with pytest.raises(UserError, match="irreducible"):
        fit_alpha_known_floor(N, np.full(len(N), 0.1), irreducible=0.2)


def test_estimate_s_from_eigenvalues_and_from_samples():
    k = np.arange(1, 501, dtype=float)
    assert estimate_s(k**-1.3).s == pytest.approx(1.3, abs=1e-6)
    rng = np.random.default_rng(0)
    d, n = 100, 5000
    X = rng.standard_normal((n, d)) * np.arange(1, d + 1) ** -0.5  # covariance eigenvalues k^-1
    assert estimate_s(spectrum_from_samples(X)).s == pytest.approx(1.0, abs=0.1)


def test_predicted_shift_positive_for_preconditioners_and_table_interpolation():
    setting = dict(N_values=[32, 64, 128, 256], steps=6, damping=1e-3, source_r=0.05, input_dim=2048,
                   multipliers=[0.5, 1.0, 1.5, 1.9])
    shift = predict_alpha_shift(1.0, ["kron", "sign", "ngd"], **setting)
    assert 0 < shift["kron"] < shift["sign"] < shift["ngd"]
    table = {0.5: 0.0, 1.0: 0.2, 1.5: 0.3}
    assert interpolate_shift(table, 1.25, "ngd") == pytest.approx(0.25)
    assert interpolate_shift(table, 1.0, "ngd", exclude=1.0) == pytest.approx(0.15)
