"""`optlaw fit` end to end: records and CSVs in, fit.json, report.md, PNGs and W&B files out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from optlaw.entry import cli
from optlaw.fit.synthetic import synthetic_table
from optlaw.records import RunRecord, write_record

FIT_KEYS = {"law", "objective", "reference", "n_points", "shared", "optimizers", "separate", "holdout", "n_basis"}


def write_sweep(root: Path) -> Path:
    t = synthetic_table(seed=2, noise=0.003)
    for i, (o, n, d, l) in enumerate(zip(t.optimizer, t.N, t.D, t.loss)):
        write_record(root / "runs" / f"r{i:03d}", RunRecord.from_json({
            "run_id": f"r{i:03d}", "task": "llm", "status": "done", "optimizer": o, "N": n, "N_total": 1.2 * n,
            "N_non_embedding": n, "D": d, "flops": 6 * n * d, "final_val_loss": l, "seed": 0,
            "step_cost_ratio": 1.1 if o == "muon" else 1.0, "hyperparameters": {"lr_mult": 1.0}, "sweep": "group-from-records"}))
    write_record(root / "runs" / "bad", RunRecord.from_json({
        "run_id": "bad", "task": "llm", "status": "diverged", "optimizer": "lion", "N": 1e7, "D": 1e8,
        "final_val_loss": None, "reason": "NaN loss at step 12"}))
    return root


def test_fit_runs_writes_fit_json_report_plots_and_wandb_files(tmp_path):
    sweep = write_sweep(tmp_path / "syn")
    out = tmp_path / "fit"
    code = cli.main(["fit", "--runs", str(sweep), "--law", "compute", "--bootstrap", "50", "--out", str(out),
                     "--wandb", "offline"])
    assert code == 0
    doc = json.loads((out / "fit.json").read_text())
    assert FIT_KEYS <= set(doc)
    assert doc["law"] == "compute" and doc["objective"] == "huber_log" and doc["reference"] == "adamw"
    assert doc["n_basis"] == "non_embedding" and doc["n_points"] == 75
    assert set(doc["shared"]) >= {"E", "A", "B", "alpha", "beta"}
    muon = doc["optimizers"]["muon"]
    assert {"rho_N", "rho_D", "n_points", "rho_N_ci", "rho_D_ci", "compute_multiplier"} <= set(muon)
    assert muon["rho_N_ci"][0] <= muon["rho_N"] <= muon["rho_N_ci"][1]
    assert muon["cost_per_ND"] == pytest.approx(6.6)
    assert set(doc["separate"]["lion"]) >= {"E", "A", "B", "alpha", "beta", "condition_number"}
    assert doc["holdout"] and set(doc["holdout"][0]) >= {"optimizer", "N", "D", "actual", "shared", "separate"}
    assert doc["excluded_runs"][0]["reason"] == "NaN loss at step 12"
    report = (out / "report.md").read_text()
    for needle in ("Shared-exponent law", "Conditioning", "Extrapolation check", "Runs not fitted",
                   "NaN loss at step 12", "Compute-optimal allocation"):
        assert needle in report
    for png in ("loss_vs_D", "loss_vs_N", "rho", "residuals", "frontier"):
        assert (out / f"{png}.png").stat().st_size > 10_000
    wandb_dir = Path(os.environ["WANDB_DIR"])
    assert list(wandb_dir.rglob("offline-run-*/run-*.wandb")), "no offline W&B run file"
    images = [p.name for p in wandb_dir.rglob("media/images/**/*.png")]
    assert any(name.startswith("rho") for name in images) and len(images) >= 5, images
    assert list(wandb_dir.rglob("files/report.md"))
    run_file = next(wandb_dir.rglob("offline-run-*/run-*.wandb"))
    assert b"group-from-records" in run_file.read_bytes()  # the records' sweep name is the W&B group


def test_fit_chinchilla_csv_through_the_cli(reference_data, tmp_path, capsys):
    out = tmp_path / "chin"
    code = cli.main(["fit", "--csv", str(reference_data / "epoch_chinchilla_svg_extracted_data.csv"),
                     "--column", "N=Model Size", "--column", "flops=Training FLOP", "--default-optimizer",
                     "chinchilla", "--drop-highest-loss", "5", "--law", "chinchilla", "--bootstrap", "0",
                     "--holdout", "none", "--n-basis", "total", "--no-plots", "--cross-check", "8",
                     "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "fit.json").read_text())
    check = doc["cross_check"]
    assert check["n_starts"] == 8 and check["fit"] == "separate/chinchilla"
    assert check["variable_projection_objective"] <= check["hoffmann_objective"] * (1 + 1e-7)
    assert not check["hoffmann_better"]
    assert doc["n_points"] == 240 and doc["shared"] is None and doc["n_basis"] == "total"
    assert round(doc["separate"]["chinchilla"]["alpha"], 4) == 0.3473
    assert "reference 'adamw' not in the data" in " ".join(doc["warnings"])


@pytest.mark.slow
def test_fit_marin_optimizers_csv_end_to_end(reference_data, tmp_path):
    out = tmp_path / "marin"
    code = cli.main(["fit", "--csv", str(reference_data / "marin_fantastic_optimizers_final_losses.csv"),
                     "--column", "optimizer=optimizer_canonical", "--column", "N=N_nonembed",
                     "--column", "D=D_tokens", "--column", "loss=loss_c4_en", "--n-basis", "non_embedding",
                     "--bootstrap", "30", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "fit.json").read_text())
    assert doc["n_points"] == 150 and len(doc["optimizers"]) == 11
    assert len(doc["holdout"]) == 16  # the 1.2B cells of adamw, muon, nadamw, soap
    assert {"separate", "shared", "shared_rho_D", "shared_rho_N"} == set(doc["holdout_error"])
    assert all(0.5 < o["rho_D"] < 3 for o in doc["optimizers"].values())
    assert (out / "report.md").exists() and (out / "rho.png").exists()


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_text("optimizer,N,loss\nadamw,1,2\n")
    assert cli.main(["fit", "--csv", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: x.csv lacks column(s) D") and err.count("\n") == 1
    assert cli.main(["fit", "--out", str(tmp_path / "o")]) == 2
    assert "one of the arguments --runs --csv --wandb-runs is required" in capsys.readouterr().err
    sweep = write_sweep(tmp_path / "syn")
    assert cli.main(["fit", "--runs", str(sweep), "--reference", "sgd", "--out", str(tmp_path / "o")]) == 2
    assert "reference optimizer 'sgd' is not in the data" in capsys.readouterr().err


def test_tuning_sweep_report_has_winners_and_hyperparameter_plots(tmp_path):
    t = synthetic_table(seed=4, noise=0.002)
    root = tmp_path / "tune"
    i = 0
    for o, n, d, l in zip(t.optimizer, t.N, t.D, t.loss):
        for lr_mult, penalty in ((0.5, 0.02), (1.0, 0.0), (2.0, 0.01)):  # best in the middle
            write_record(root / "runs" / f"r{i:04d}", RunRecord.from_json({
                "run_id": f"r{i:04d}", "task": "llm", "status": "done", "optimizer": o, "N": n, "N_non_embedding": n,
                "D": d, "final_val_loss": l + penalty, "seed": 0, "hyperparameters": {"lr_mult": lr_mult}}))
            i += 1
    out = tmp_path / "fit"
    assert cli.main(["fit", "--runs", str(root), "--bootstrap", "0", "--holdout", "none", "--out", str(out)]) == 0
    doc = json.loads((out / "fit.json").read_text())
    assert doc["n_points"] == 75 and len(doc["tuning"]) == 75
    assert all(c["winner"] == {"lr_mult": 1.0} and c["at_edge"] == [] for c in doc["tuning"])
    assert not any("edge of the swept range" in w for w in doc["warnings"])
    for opt in ("adamw", "muon", "lion"):
        assert (out / f"tuning_{opt}.png").exists()
    assert "Tuning: best run per cell" in (out / "report.md").read_text()
