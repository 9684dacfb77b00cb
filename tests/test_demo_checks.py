"""The demo's criteria (issue 13, point 1) and its plain summary, read from fit.json documents (no training)."""

import copy

from optlaw.entry.demo import demo_checks, plain_summary

DOC = {
    "reference": "adamw", "n_points": 28,
    "shared": {"E": 1.36, "A": 2660.0, "B": 3421.0, "alpha": 1.07, "beta": 0.74,
               "ci": {"alpha": [0.76, 1.67], "beta": [0.58, 1.02]},
               "identifiability": {"verdict": "identified", "reasons": []}},
    "separate": {"adamw": {"ci": {"alpha": [0.06, 2.27], "beta": [0.48, 1.18]},
                           "identifiability": {"verdict": "not identified", "reasons": ["E unbounded"]}},
                 "muon": {"ci": {"alpha": [0.8, 1.2], "beta": [0.6, 0.8]},
                          "identifiability": {"verdict": "identified", "reasons": []}}},
    "optimizers": {"adamw": {"rho_N": 1.0, "rho_D": 1.0},
                   "muon": {"rho_N": 0.97, "rho_N_ci": [0.81, 1.35], "rho_D": 1.86, "rho_D_ci": [1.66, 2.05]},
                   "soap": {"rho_N": 0.5, "rho_N_ci": [0.4, 0.8], "rho_D": 0.9, "rho_D_ci": [0.7, 1.2]}},
    "holdout_error": {"shared": {"rmse_log": 0.009}, "separate": {"rmse_log": 0.012}},
    "rho_constancy": {"test": "F test", "p_value": 0.4, "level": 0.05},
    "tuning_protocol": {"cells": [
        {"cell": "llama/7k adamw tokens=262144", "N": 6736, "role": "tuned", "status": "resolved", "resolved": True},
        {"cell": "llama/14k muon tokens=262144", "N": 13944, "role": "tuned", "status": "resolved", "resolved": True},
        {"cell": "llama/75k muon tokens=524288", "N": 73752, "role": "predicted", "status": "done", "resolved": False}]},
}


def verdicts(doc):
    return {name: passed for name, passed, _ in demo_checks(doc)}


def test_every_criterion_passes_on_a_document_that_meets_it():
    assert verdicts(DOC) == {
        "shared law identified": True, "separate fits ill-conditioned": True,
        "rho_D intervals at most 2x wide": True, "rho_N intervals at most 3x wide": True,
        "alpha and beta intervals exclude 0.03": True,
        "shared law beats separate at the largest N held out": True, "rho constancy tested": True,
        "learning rates from the tuning protocol": True}


def test_each_criterion_fails_or_is_unknown_on_its_own_violation():
    cases = {
        "shared law identified": (lambda d: d["shared"]["identifiability"].update(verdict="weak"), False),
        "separate fits ill-conditioned": (lambda d: d["separate"]["adamw"]["identifiability"].update(verdict="identified"), False),
        "rho_D intervals at most 2x wide": (lambda d: d["optimizers"]["soap"].update(rho_D_ci=[0.5, 1.2]), False),
        "rho_N intervals at most 3x wide": (lambda d: d["optimizers"]["muon"].update(rho_N_ci=[0.4, 1.3]), False),
        "alpha and beta intervals exclude 0.03": (lambda d: d["shared"]["ci"].update(alpha=[0.01, 1.0]), False),
        "shared law beats separate at the largest N held out": (lambda d: d["holdout_error"]["shared"].update(rmse_log=0.02), False),
        "rho constancy tested": (lambda d: d.pop("rho_constancy"), None),
        "learning rates from the tuning protocol": (lambda d: d.pop("tuning_protocol"), False),
    }
    for name, (spoil, expected) in cases.items():
        doc = copy.deepcopy(DOC)
        spoil(doc)
        got = verdicts(doc)
        assert got[name] is expected, name
        assert all(v is True for k, v in got.items() if k != name), name


def test_without_verdicts_separate_conditioning_is_read_from_the_exponent_intervals():
    doc = copy.deepcopy(DOC)
    for entry in (doc["shared"], *doc["separate"].values()):
        entry.pop("identifiability")
    got = {name: (passed, detail) for name, passed, detail in demo_checks(doc)}
    assert got["shared law identified"][0] is None
    assert got["separate fits ill-conditioned"] == (True, "exponent intervals wider than the shared law's: "
                                                    "adamw alpha [0.06, 2.27]; adamw beta [0.48, 1.18]")
    doc["separate"]["adamw"]["ci"] = {"alpha": [0.9, 1.1], "beta": [0.6, 0.7]}
    assert verdicts(doc)["separate fits ill-conditioned"] is False


def test_the_summary_is_the_law_one_plain_line_per_optimizer_and_the_checks():
    lines = plain_summary(DOC)
    assert lines == [
        "Shared law: L = 1.360 + 2.66e+03/(rho_N N)^1.070 + 3.42e+03/(rho_D D)^0.740  (28 runs, reference AdamW, identified)",
        "Muon reaches AdamW's loss with 1.86x [1.66, 2.05] fewer tokens (not resolved from 1: parameters 0.97x [0.81, 1.35]).",
        "SOAP reaches AdamW's loss with 2.00x [1.25, 2.50] more parameters (not resolved from 1: tokens 0.90x [0.70, 1.20]).",
        "Checks: shared law identified yes, separate fits ill-conditioned yes, rho_D <= 2x wide yes, rho_N <= 3x wide yes, "
        "exponents exclude 0.03 yes, shared beats separate at largest N yes, rho constancy tested yes, lr tuned or predicted yes.",
    ]
    assert 3 <= len(lines) <= 5


def test_the_learning_rate_criterion_names_each_role_and_fails_on_a_fixed_or_unfinished_cell():
    got = {name: (passed, detail) for name, passed, detail in demo_checks(DOC)}
    assert got["learning rates from the tuning protocol"] == (True, "2 tuned (llama/7k, llama/14k), 1 predicted (llama/75k)")
    for spoil in ({"role": "fixed"}, {"status": "waiting"}):
        doc = copy.deepcopy(DOC)
        doc["tuning_protocol"]["cells"][2].update(spoil)
        assert verdicts(doc)["learning rates from the tuning protocol"] is False, spoil
