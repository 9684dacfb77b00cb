"""The fitting stage reads tuning sweeps (optlaw.fit.tuning_view): the protocol's winner per cell, the
loss-against-lr curves with their interpolated minima, hyperparameter laws with intervals, sensitivity,
unresolved cells, the scaling rules beside rho; fit.json's sections and the report's.

A tuning sweep is planned for real (optlaw.sweep.tuning) and its points 'trained' by writing records
from a known surface, so the test runs in seconds and the expected numbers are exact."""

from __future__ import annotations

import json
import math

import pytest

from optlaw import records
from optlaw.fit import load_runs, run_study
from optlaw.fit.tuning_view import sensitivity
from optlaw.sweep.hparam_law import curve_minimum
from optlaw.report import write_report
from optlaw.sweep.manifest import write_tuning_manifest
from optlaw.sweep.tuning import TuningPlanner
from optlaw.sweep.tuning_replay import read_tuning

A_N, B_D = -0.3, -0.2                       # the surface's law: lr* = 2 x scale x (N/1e5)^a (D/2048)^b
CURVATURE = {"adamw": 0.6, "muon": 0.3}  # muon's curve is flatter: wider within 1%


def best_lr(optimizer: str, N: float, D: float) -> float:
    return 2.0 * (4.0 if optimizer == "muon" else 1.0) * (N / 1e5) ** A_N * (D / 2048) ** B_D


def best_loss(N: float, D: float) -> float:
    return 2.0 + 40.0 / N ** 0.3 + 10.0 / D ** 0.3


def loss_of(optimizer: str, N: float, D: float, lr_mult: float) -> float:
    return best_loss(N, D) + CURVATURE[optimizer] * (math.log(lr_mult) - math.log(best_lr(optimizer, N, D))) ** 2


def record_of(point, loss: float) -> records.LLMRunRecord:
    optimizer, N, D = point.axes["optimizer"], float(point.plan.n_basis), float(point.tokens)
    tuning = {k: v for k, v in point.extra["tuning"].items() if k not in ("N", "D")}
    scaling = {"lr_rule": "none", "wd_rule": "coupled", "base_width": 256, "lr_groups": ["hidden_matrix"]}
    return records.LLMRunRecord(run_id=point.run_id, task="llm", status=records.DONE, optimizer=optimizer,
                                family="llama", size=point.axes["model"], seed=0, N=N, N_total=N, N_non_embedding=N,
                                D=D, tokens_trained=D, flops=6 * N * D, final_val_loss=loss, tuning=tuning,
                                hyperparameters={"lr_mult": point.axes["optimizer.lr_mult"]},
                                config={"optimizer": {"name": optimizer, "scaling": scaling}})


def tuned_sweep(sweep_dir, max_extensions: int = 4):
    definition = {
        "name": "fitsyn", "task": "llm", "models": ["llama/100k", "llama/250k"], "optimizers": ["adamw", "muon"],
        "seeds": [0], "tokens": [2048, 8192],
        "fixed": {"device": "cpu", "batch.global_tokens": 512, "batch.micro_batch_size": 4},
        "tuning": {"enabled": True, "law_bootstrap": 200,
                   "hyperparameters": [{"key": "optimizer.lr_mult", "max_extensions": max_extensions}]},
    }
    planner = TuningPlanner(definition, sweep_dir)
    for _ in range(30):
        plan = planner.plan()
        write_tuning_manifest(sweep_dir, planner.definition, plan.points, [], plan.manifest_section())
        todo = [p for p in plan.points if records.read_record(sweep_dir / "runs" / p.run_id) is None]
        if not todo:
            return plan
        for point in todo:
            loss = loss_of(point.axes["optimizer"], point.plan.n_basis, point.tokens, point.axes["optimizer.lr_mult"])
            records.write_record(sweep_dir / "runs" / point.run_id, record_of(point, loss))
    raise AssertionError("the tuning did not finish")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("fit_tuning") / "sweep"
    plan = tuned_sweep(sweep_dir)
    assert plan.complete and all(c.resolved for c in plan.state.cells)
    return sweep_dir, plan


def test_the_best_run_of_each_cell_is_the_protocols_winner_not_a_stray_lower_loss(sweep, tmp_path):
    sweep_dir, plan = sweep
    muon = next(c for c in plan.state.cells if c.spec.axes["optimizer"] == "muon")
    # A run of the same cell from outside the protocol (an lr the walk never planned), with a lower loss.
    winner = records.read_record(sweep_dir / "runs" / muon.winner_run_ids[0])
    stray = records.LLMRunRecord(**{**winner.__dict__, "run_id": "stray", "final_val_loss": muon.winner_loss - 0.5,
                                   "hyperparameters": {"lr_mult": 3.3}})
    records.write_record(sweep_dir / "runs" / "stray", stray)
    try:
        table = load_runs(sweep_dir)
    finally:
        (sweep_dir / "runs" / "stray" / "run.json").unlink()
        (sweep_dir / "runs" / "stray").rmdir()
    kept = {(o, n, d): loss for o, n, d, loss in zip(table.optimizer, table.N, table.D, table.loss)}
    for cell in plan.state.cells:
        assert kept[(cell.spec.axes["optimizer"], cell.spec.N, cell.spec.D)] == pytest.approx(cell.winner_loss)
    entry = next(e for e in table.tuning if e["tuning_cell"] == muon.spec.label)
    assert entry["winner"] == {"lr_mult": muon.setting["optimizer.lr_mult"]} and entry["at_edge"] == []


def test_fit_json_gains_laws_with_intervals_sensitivity_and_per_cell_protocol_entries(sweep):
    sweep_dir, plan = sweep
    doc = json.loads(json.dumps(run_study(load_runs(sweep_dir), law="shared", bootstrap=0, holdout=None).document))
    laws = doc["hyperparameter_laws"]
    assert set(laws) == {"adamw", "muon"}
    for group, (law,) in laws.items():
        # The surface is a parabola in log lr, so each interpolated minimum is exact and so is the law.
        assert law["key"] == "optimizer.lr_mult" and law["n_cells"] == 4 and len(law["cells"]) == 4
        assert law["coef"]["a"] == pytest.approx(A_N, abs=1e-6) and law["coef"]["b"] == pytest.approx(B_D, abs=1e-6)
        for term in ("c", "a", "b"):
            low, high = law["ci"][term]
            assert low - 1e-9 <= law["coef"][term] <= high + 1e-9
    # Per cell: the table's entry keeps at_edge and gains the protocol's curve, minimum and verdict.
    assert len(doc["tuning"]) == 8 and all("at_edge" in e and e["protocol"] for e in doc["tuning"])
    for entry in doc["tuning"]:
        cell = entry["protocol"]
        curve = cell["curves"]["optimizer.lr_mult"]
        assert cell["resolved"] and curve["minimum"]["interpolated"]
        expected = best_lr(cell["optimizer"], cell["N"], cell["D"])
        assert curve["minimum"]["value"] == pytest.approx(expected, rel=1e-6)
    assert doc["unresolved_cells"] == []
    # Within 1% of the best loss L0: |ln lr - ln lr*| <= sqrt(0.01 L0 / curvature).
    sens = doc["tuning_sensitivity"]
    cells = {e["protocol"]["cell"]: e["protocol"] for e in doc["tuning"]}
    for opt, curvature in CURVATURE.items():
        assert sens[opt]["n_cells"] == 4
        for label, measured in sens[opt]["cells"].items():
            exact = 2 * math.sqrt(0.01 * best_loss(cells[label]["N"], cells[label]["D"]) / curvature) / math.log(2)
            assert measured["width_log2"] == pytest.approx(exact, rel=1e-6)  # the parabola is the surface
    assert sens["muon"]["median_width_log2"] > sens["adamw"]["median_width_log2"]
    assert doc["scaling_rules"]["muon"] == [{"lr_rule": "none", "wd_rule": "coupled", "base_width": 256,
                                             "lr_groups": ["hidden_matrix"]}]


def test_the_report_plots_each_cells_curve_and_gives_laws_sensitivity_and_rules(sweep, tmp_path):
    sweep_dir, _ = sweep
    study = run_study(load_runs(sweep_dir), law="shared", bootstrap=0, holdout=None)
    paths = write_report(study, tmp_path / "report")
    names = {p.name for p in paths}
    assert {"tuning_protocol_adamw.png", "tuning_protocol_muon.png"} <= names
    text = (tmp_path / "report" / "report.md").read_text()
    for heading in ("## Tuning protocol", "## Hyperparameter laws", "## Learning-rate sensitivity",
                    "## Rules in force beside rho"):
        assert heading in text
    assert "![tuning protocol](tuning_protocol_muon.png)" in text


def test_unresolved_cells_are_flagged_in_fit_json_warnings_and_the_report(tmp_path):
    sweep_dir = tmp_path / "sweep"
    plan = tuned_sweep(sweep_dir, max_extensions=0)  # most optima lie beyond the first grid (0.5, 1, 2)
    unresolved = sorted(c.spec.label for c in plan.state.cells if not c.resolved)
    assert unresolved and {"llama/100k muon tokens=2048", "llama/250k muon tokens=8192"} <= set(unresolved)
    doc = run_study(load_runs(sweep_dir), law="shared", bootstrap=0, holdout=None).document
    assert sorted(doc["unresolved_cells"]) == unresolved
    assert sum("is unresolved" in w for w in doc["warnings"]) == len(unresolved)
    used = {c["cell"] for laws in doc["hyperparameter_laws"].values() for law in laws for c in law["cells"]}
    assert not used & set(unresolved)  # a law fits only resolved cells' minima
    assert all(e["at_edge"] for e in doc["tuning"] if e["protocol"]["cell"] in unresolved)


def test_sensitivity_from_the_parabola_or_read_off_the_points_with_censored_sides():
    values = [1.0, 2.0, 4.0]
    sharp = [4.0, 3.0, 4.0]                       # parabola 3 + (ln v - ln 2)^2 / ln(2)^2
    exact = 2 * math.sqrt(0.03)                   # octaves within 1% of 3.0
    measured = sensitivity(values, sharp, curve_minimum(values, sharp))
    assert measured["method"] == "parabola" and measured["width_log2"] == pytest.approx(exact)
    assert measured["censored"] == [] and measured["low"] * measured["high"] == pytest.approx(4.0)
    flat = [3.0, 3.0, 3.06]                        # best at the edge: read off the points
    measured = sensitivity(values, flat, curve_minimum(values, flat))
    assert measured["method"] == "points" and measured["censored"] == ["low"]
    assert measured["width_log2"] == pytest.approx(1.5)  # 3.03 is crossed halfway from 2 to 4
def test_a_fit_without_tuning_sweeps_has_empty_tuning_sections():
    from pathlib import Path

    from optlaw.fit.tuning_view import fit_sections

    table = load_runs(Path(__file__).parent / "data" / "run_records_v1")
    doc = fit_sections(table.tuning, table.tuning_protocol)
    assert doc["tuning"] == [] and doc["hyperparameter_laws"] == {} and doc["unresolved_cells"] == []
    assert doc["tuning_protocol"] == {"sources": [], "complete": True, "cells": []}
    assert "adamw" in doc["scaling_rules"]  # the rules are recorded for any fit


def test_optlaw_fit_on_a_tuning_sweep_prints_the_laws(sweep, tmp_path, capsys):
    # docs/sweeps.md: optlaw fit --runs SWEEP_DIR (here with a small bootstrap and no plots, for time)
    from optlaw.entry.fit_cmd import main as main_fit

    sweep_dir, _ = sweep
    assert main_fit(["--runs", str(sweep_dir), "--out", str(tmp_path / "fit"), "--bootstrap", "20",
                     "--holdout", "none", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "adamw optimizer.lr_mult: log h* = c + a log N + b log D; c = " in out
    assert "muon lr sensitivity: " in out
    doc = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert set(doc["hyperparameter_laws"]) == {"adamw", "muon"}
