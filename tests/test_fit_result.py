"""The typed fit result and study: keys, intervals, predictions, convergence, one serialiser, the entry API."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from optlaw.errors import UserError
from optlaw.fit import (
    FitResult, ParamKey, WarningKind, fit_compute, fit_separate, fit_shared, run_study, solver,
)
from optlaw.fit.synthetic import RHO, TRUTH, synthetic_table, true_loss


@pytest.fixture(scope="module")
def shared():
    return fit_shared(synthetic_table(seed=1, noise=0.004), bootstrap=200, seed=1)


def test_result_is_frozen_and_keyword_only(shared):
    with pytest.raises(dataclasses.FrozenInstanceError):
        shared.law = "chinchilla"
    with pytest.raises(TypeError):
        shared.params["alpha"] = 1.0  # the parameter map is read-only
    with pytest.raises(ValueError, match="read-only"):
        shared.bootstrap_samples["alpha"][0] = 0.0
    fields = {f.name: getattr(shared, f.name) for f in dataclasses.fields(FitResult)}
    with pytest.raises(TypeError, match="positional"):
        FitResult(*fields.values())
    rebuilt = FitResult(**fields)
    assert rebuilt.params == shared.params and "converged=True" in repr(rebuilt)
    copy = pickle.loads(pickle.dumps(shared))
    assert copy.params == shared.params and copy.conf_int(0.9) == shared.conf_int(0.9)


def test_parameters_are_keyed_by_name_and_optimizer(shared):
    assert set(shared.params.of(None)) == {"E", "A", "B", "alpha", "beta", "allocation_exponent"}
    for opt, (rho_N, rho_D) in RHO.items():
        assert shared.params.of(opt) == {"rho_N": shared.params["rho_N", opt], "rho_D": shared.params["rho_D", opt]}
        assert shared.params[ParamKey("rho_D", opt)] == shared.param("rho_D", opt)
    assert shared.params["alpha"] == shared.params["alpha", None] == shared.params[ParamKey("alpha")]
    assert all(isinstance(k, ParamKey) for k in shared.params)
    with pytest.raises(KeyError, match=r"no parameter 'rho_N/muon' shared; keys are \(name, optimizer\)"):
        shared.params["rho_N/muon"]  # names are never parsed out of strings
    assert str(ParamKey("rho_N", "muon")) == "rho_N/muon" and str(ParamKey("alpha")) == "alpha"
    sep = fit_separate(synthetic_table(noise=0.0))
    assert sep.params.of(None) == {} and set(sep.params.of("muon")) == {"E", "A", "B", "alpha", "beta",
                                                                         "allocation_exponent"}


def test_conf_int_at_any_level_from_the_stored_samples(shared):
    samples = shared.bootstrap_samples
    assert shared.bootstrap_replicates == 200 and len(samples["rho_D", "muon"]) == 200
    assert shared.conf_int(0.95) == shared.ci
    wide, narrow = shared.conf_int(0.95), shared.conf_int(0.5)
    for key in shared.params:
        assert wide[key][0] <= narrow[key][0] <= narrow[key][1] <= wide[key][1], key
    lo, hi = shared.conf_int(0.8)["rho_N", "muon"]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(samples["rho_N", "muon"], [10, 90])))
    with pytest.raises(ValueError, match="level"):
        shared.conf_int(95)
    no_boot = fit_shared(synthetic_table(noise=0.0))
    assert no_boot.bootstrap_samples is None and len(no_boot.conf_int(0.9)) == 0 and no_boot.bootstrap_replicates == 0


def test_predict_and_compute_optimal_follow_the_fitted_law():
    fit = fit_compute(synthetic_table(noise=0.0))
    N, D = np.array([1e8, 3e8]), np.array([2e9, 1e10])
    p = fit.params
    by_hand = p["E"] + p["A"] / (p["rho_N", "muon"] * N) ** p["alpha"] + p["B"] / (p["rho_D", "muon"] * D) ** p["beta"]
    np.testing.assert_allclose(fit.predict(N, D, "muon"), by_hand, rtol=1e-12)
    np.testing.assert_allclose(fit.predict(N, D, "muon"), true_loss(N, D, "muon"), rtol=1e-5)
    C = 1e19
    N_opt, D_opt, L_opt = fit.compute_optimal(C, "muon")
    assert fit.compute_cost(N_opt, D_opt, "muon") == pytest.approx(C)
    assert L_opt == pytest.approx(fit.predict(N_opt, D_opt, "muon"))
    for factor in (0.8, 1.25):  # the optimum: any other split of the same budget does worse
        assert fit.predict(N_opt * factor, D_opt / factor, "muon") > L_opt
    plain_shared = fit_shared(synthetic_table(noise=0.0))  # no compute law: C = 6 N D
    assert plain_shared.cost_per_ND is None and plain_shared.compute_cost(1e8, 1e9, "adamw") == pytest.approx(6e17)


def test_an_iteration_limit_is_not_converged_and_not_on_bound(monkeypatch):
    table = synthetic_table(seed=3, noise=0.004)
    assert fit_shared(table).converged
    monkeypatch.setattr(solver, "POLISH_MAX_ITER", 2)
    fit = fit_shared(table)
    assert not fit.converged and not fit.solves[None].converged
    assert "iteration limit (2)" in fit.message and fit.on_bound == ()
    # one convergence warning, and the verdict it causes (weak: the numbers are inexact)
    assert [w.kind for w in fit.warnings] == [WarningKind.CONVERGENCE, WarningKind.IDENTIFIABILITY]
    assert fit.verdict(None).verdict == "weak"
    assert fit.verdict(None).reasons == ("weak: the solve stopped at its iteration limit",)
    sep = fit_separate(table)
    assert not sep.converged and sep.message.startswith("adamw: the polish reached its iteration limit")
    study = run_study(table, law="shared", bootstrap=0, holdout=None)
    doc = study.document
    assert doc["shared"]["converged"] is False and "iteration limit" in doc["shared"]["message"]
    assert doc["shared"]["on_bound"] == [] and doc["separate"]["muon"]["converged"] is False
    assert "not converged: the polish reached its iteration limit (2)" in " ".join(doc["warnings"])


def test_fit_json_is_the_study_document_built_from_each_results_to_json():
    table = synthetic_table(seed=2, noise=0.003)
    study = run_study(table, law="compute", bootstrap=30, holdout="largest")
    doc = study.document
    sep, sh = study.separate.to_json(), study.shared.to_json()
    assert doc["separate"] == sep["separate"]
    assert (doc["shared"], doc["optimizers"], doc["compute"]) == (sh["shared"], sh["optimizers"], sh["compute"])
    assert doc["conditioning"] == sep["conditioning"] + sh["conditioning"]
    assert doc["residuals"] == {"separate": sep["residuals"]["separate"], "shared": sh["residuals"]["shared"]}
    assert doc["holdout"] == study.holdout.cells and doc["holdout_spec"] == "largest"
    assert doc["warnings"] == [w.message for w in study.warnings]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON already
    muon = doc["optimizers"]["muon"]
    assert muon["rho_D_ci"] == list(study.shared.ci["rho_D", "muon"])
    assert muon["compute_multiplier"] == study.shared.params["compute_multiplier", "muon"]
    assert study.shared.summary().count("\n") > 10 and "compute_multiplier/muon" in study.shared.summary()


def test_warnings_travel_one_way_as_typed_records():
    table = synthetic_table(noise=0.0)
    long_only = table.subset(np.isclose(table.D / table.N, 80.0) | np.isclose(table.D / table.N, 40.0))
    fit = fit_compute(long_only, n_budgets=3)
    kinds = {w.kind for w in fit.warnings}
    assert WarningKind.EXTRAPOLATION in kinds
    assert {w.optimizer for w in fit.warnings if w.kind == WarningKind.EXTRAPOLATION} <= set(RHO)
    study = run_study(long_only, law="compute", bootstrap=0, holdout=None)
    assert [w.message for w in study.warnings] == study.document["warnings"]
    assert len(set(study.document["warnings"])) == len(study.document["warnings"])  # each once


def test_fit_to_dir_returns_the_study_and_writes_its_document(tmp_path):
    from optlaw.entry.fit_cmd import FitRequest, fit_to_dir

    t = synthetic_table(seed=5, noise=0.003)
    csv = tmp_path / "runs.csv"
    csv.write_text("optimizer,N,D,loss\n" + "".join(f"{o},{n},{d},{l}\n" for o, n, d, l in
                                                    zip(t.optimizer, t.N, t.D, t.loss)))
    request = FitRequest(csv=csv, out=tmp_path / "fit", bootstrap=20, holdout=None, plots=False)
    study = fit_to_dir(request)
    assert json.loads((tmp_path / "fit" / "fit.json").read_text()) == study.document
    assert (tmp_path / "fit" / "report.md").exists() and not list((tmp_path / "fit").glob("*.png"))
    assert study.shared.params["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.05)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.bootstrap = 0
    with pytest.raises(TypeError):
        FitRequest(tmp_path / "fit")  # keyword-only
    with pytest.raises(UserError, match="exactly one source .* got runs, csv"):
        FitRequest(runs=("a",), csv=csv, out=tmp_path)
    with pytest.raises(UserError, match="exactly one source .* got none"):
        FitRequest(out=tmp_path)
    with pytest.raises(UserError, match="law must be one of chinchilla, shared, compute"):
        FitRequest(csv=csv, out=tmp_path, law="kaplan")
    assert FitRequest(runs="sweeps/a", out=tmp_path).runs == ("sweeps/a",)
