"""Identifiability verdicts, conditioning, cost basis, conclusions and degenerate input, end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from optlaw.entry import cli
from optlaw.fit import RunTable, fit_compute, fit_separate, fit_shared, run_study
from optlaw.fit.study import summarize
from optlaw.fit.synthetic import synthetic_table
from optlaw.records import RunRecord, write_record

REPO = Path(__file__).resolve().parents[1]
MARIN = ["--column", "optimizer=optimizer_canonical", "--column", "N=N_nonembed", "--column", "D=D_tokens",
         "--column", "loss=loss_c4_en", "--n-basis", "non_embedding"]


def law_table(N, D, opt="x", seed=0, noise=0.003) -> RunTable:
    rng = np.random.default_rng(seed)
    N, D = np.asarray(N, float), np.asarray(D, float)
    loss = (1.8 + 400 / N ** 0.34 + 1500 / D ** 0.3) * np.exp(noise * rng.standard_normal(N.size))
    return RunTable.from_columns([opt] * N.size, N, D, loss)


# ----------------------------------------------------------------------------- verdicts

def test_a_well_posed_design_is_identified():
    sep = fit_separate(synthetic_table(seed=1, noise=0.004), bootstrap=100)
    assert {str(v.verdict) for v in sep.identifiability.values()} == {"identified"}
    shared = fit_shared(synthetic_table(seed=1, noise=0.004), bootstrap=100)
    assert shared.verdict(None).verdict == "identified" and shared.verdict(None).reasons == ()
    assert shared.verdict("muon").verdict == "identified"


def test_one_D_per_N_is_not_identified_and_says_why():
    N = np.geomspace(1e7, 1e9, 8)
    fit = fit_separate(law_table(N, 20 * N), bootstrap=50)
    v = fit.verdict("x")
    assert v.verdict == "not identified"
    assert any("one D per N, so the N and D terms are confounded" in r for r in v.reasons)


def test_porian_compute_optimal_pairs_are_not_identified(reference_data, tmp_path):
    # one (N*, D*) per budget: the published allocation exponent must not come out as a conclusion
    with open(reference_data / "porian2024_optimal_pairs.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if (r["dataset"], r["hparams"], r["warmup"], r["decay"],
                                                   r["param_count"], r["loss_split"]) ==
                ("rw", "tuned", "short", "const", "standard", "val")]
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "porian"
    code = cli.main(["fit", "--csv", str(path), "--column", "N=N_opt", "--column", "D=D_opt", "--column",
                     "loss=loss_opt", "--default-optimizer", "adamw", "--law", "compute", "--bootstrap", "100",
                     "--no-plots", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "fit.json").read_text())
    assert doc["separate"]["adamw"]["identifiability"]["verdict"] == "not identified"
    assert doc["shared"]["identifiability"]["verdict"] == "not identified"
    assert any("The separate law of adamw is not identified" in s for s in doc["conclusions"]["not_supported"])


def test_near_minimal_and_two_point_designs():
    N = np.array([1e7, 1e7, 3e7, 3e7, 1e8, 1e8, 1e8])
    D = np.array([1e9, 4e9, 2e9, 8e9, 1e9, 4e9, 1.6e10])
    assert fit_separate(law_table(N, D)).verdict("x").verdict == "weak"
    assert any("near-minimal" in r for r in fit_separate(law_table(N, D)).verdict("x").reasons)
    # a 2-point smoke sweep: the shared law of one optimizer on 2 cells
    two = law_table([1e6, 1e6], [1.6e4, 3.3e4], opt="adamw")
    fit = fit_shared(two, bootstrap=50)
    v = fit.verdict(None)
    assert v.verdict == "not identified"
    assert any("2 cells for 5 parameters" in r for r in v.reasons)
    assert any("one N value" in r for r in v.reasons)


def test_coefficient_on_its_bound_is_weak():
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e9, 1e11, 5))
    N, D = N.ravel(), D.ravel()
    rng = np.random.default_rng(0)
    loss = (50 / N ** 0.1 + 3000 / D ** 0.35) * np.exp(0.002 * rng.standard_normal(N.size))  # no floor: E = 0
    fit = fit_separate(RunTable.from_columns(["x"] * N.size, N, D, loss))
    v = fit.verdict("x")
    assert v.verdict == "weak" and any("E=0 is on the bound" in r for r in v.reasons)


def test_one_cell_per_optimizer_and_null_numbers_print_without_a_traceback(tmp_path, capsys):
    # the lr_tune_smoke pattern: one N, two D, two optimizers; rho's and interval ends come out null
    t = law_table([9e5, 9e5, 9e5, 9e5], [1.6e4, 3.3e4, 1.6e4, 3.3e4])
    table = RunTable.from_columns(["adamw", "adamw", "muon", "muon"], t.N, t.D, t.loss * np.array([1, 1, 0.99, 0.98]))
    doc = run_study(table, law="shared", bootstrap=50, holdout="largest").document
    assert doc["shared"]["identifiability"]["verdict"] == "not identified"
    assert doc["optimizers"]["muon"]["identifiability"]["verdict"] == "not identified"
    text = summarize(doc)
    assert "NOT IDENTIFIED" in text
    doc["optimizers"]["muon"]["rho_N"] = None
    doc["optimizers"]["muon"]["rho_N_ci"] = [0.0, None]
    doc["shared"]["E"] = None
    assert "rho_N=unbounded [0, unbounded]" in summarize(doc)


# ----------------------------------------------------------------------------- conditioning, widths, cost

def test_conditioning_verdict_threshold_and_interval_widths_side_by_side():
    study = run_study(synthetic_table(seed=1, noise=0.004), law="shared", bootstrap=100, holdout=None)
    doc = study.document
    rows = {r["fit"]: r for r in doc["conditioning"]}
    assert rows["shared/full"]["verdict"] in ("well-conditioned", "ill-conditioned")
    assert rows["shared/full"]["threshold"] == doc["identifiability_thresholds"]["condition_number_ill"]
    widths = {w["fit"]: w for w in doc["interval_widths"]}
    assert set(widths) == {"shared/full", "separate/adamw", "separate/lion", "separate/muon"}
    # sharing the exponents narrows them: what the table is there to show
    assert widths["shared/full"]["beta"] < min(widths[f"separate/{o}"]["beta"] for o in ("adamw", "lion", "muon"))
    report = study_report(study, Path(__file__).parent / "_unused")
    assert "Width of the 95% intervals" in report and "ill-conditioned" in report


def study_report(study, _out) -> str:
    from optlaw.report.markdown import render

    return render(study.document, [])


def test_compute_law_says_which_cost_it_charged(tmp_path):
    table = synthetic_table(noise=0.0)
    table.flops[:] = np.nan
    fit = fit_compute(table)
    assert fit.cost_basis == "equal step cost assumed (6ND)" and fit.cost_measured is False
    doc = run_study(table, law="compute", bootstrap=0, holdout=None).document
    assert doc["compute"]["cost_basis"] == "equal step cost assumed (6ND)"
    assert "equal step cost assumed (6ND)" in summarize(doc)
    measured = synthetic_table(noise=0.0)
    measured.step_cost[measured.optimizer == "muon"] = 1.3
    measured.step_cost_given[:] = True
    fit = fit_compute(measured)
    assert fit.cost_measured and fit.cost_basis.startswith("measured step cost charged")


def test_csv_without_cost_columns_through_the_cli(tmp_path, capsys):
    t = synthetic_table(seed=2)
    path = tmp_path / "runs.csv"
    path.write_text("optimizer,N,D,loss\n" + "".join(f"{o},{n},{d},{l}\n" for o, n, d, l in
                                                       zip(t.optimizer, t.N, t.D, t.loss)))
    out = tmp_path / "fit"
    assert cli.main(["fit", "--csv", str(path), "--law", "compute", "--bootstrap", "0", "--holdout", "none",
                     "--no-plots", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "equal step cost assumed (6ND)" in printed and "measured step cost" not in printed
    assert "equal step cost assumed (6ND)" in (out / "report.md").read_text()
    assert json.loads((out / "fit.json").read_text())["compute"]["cost_measured"] is False


# ----------------------------------------------------------------------------- report and CLI

@pytest.mark.slow
def test_marin_report_opens_with_conclusions_and_verdicts(reference_data, tmp_path, capsys):
    out = tmp_path / "marin"
    code = cli.main(["fit", "--csv", str(reference_data / "marin_fantastic_optimizers_final_losses.csv"), *MARIN,
                     "--law", "compute", "--bootstrap", "100", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[1] == "Conclusions:"
    assert "muon uses" in printed and "fewer tokens than adamw" in printed
    report = (out / "report.md").read_text()
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["## Conclusions", "## Identifiability"]
    doc = json.loads((out / "fit.json").read_text())
    for entry in [doc["shared"], *doc["separate"].values()]:
        assert entry["identifiability"]["verdict"] in ("identified", "weak", "not identified")
    # sophia: 6 cells for 5 parameters; most resamples cannot determine its separate law
    assert doc["separate"]["sophia"]["identifiability"]["verdict"] == "not identified"
    assert doc["separate"]["sophia"]["ci"]["alpha"] == [0.0, None]
    for png in ("rho", "effective_rho", "isoflop", "frontier", "loss_vs_D", "loss_vs_N", "residuals"):
        assert (out / f"{png}.png").stat().st_size > 20_000, png


# ----------------------------------------------------------------------------- several rows per cell

def test_repeated_cells_in_a_csv_need_a_tuning_or_seed_column(tmp_path, capsys):
    rows = ["optimizer,N,D,loss,lr,run"]
    t = synthetic_table(seed=3, noise=0.002)
    for o, n, d, l in zip(t.optimizer, t.N, t.D, t.loss):
        for lr, penalty in ((1e-3, 0.03), (2e-3, 0.0), (4e-3, 0.01)):
            rows.append(f"{o},{n},{d},{l + penalty},{lr},{int(lr * 1e4)}")
    path = tmp_path / "sweep.csv"
    path.write_text("\n".join(rows) + "\n")
    assert cli.main(["fit", "--csv", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tuning-column COL" in err and "--seed-column COL" in err
    out = tmp_path / "tuned"
    assert cli.main(["fit", "--csv", str(path), "--tuning-column", "lr", "--bootstrap", "0", "--holdout", "none",
                     "--out", str(out)]) == 0
    doc = json.loads((out / "fit.json").read_text())
    assert doc["n_points"] == 75 and len(doc["tuning"]) == 75
    assert all(c["winner"] == {"lr": 2e-3} and c["at_edge"] == [] for c in doc["tuning"])
    assert doc["shared"]["alpha"] == pytest.approx(0.34, rel=0.05)
    # as seeds: every row is kept, and the fit says so (3 runs per cell)
    seeds = tmp_path / "seeds"
    assert cli.main(["fit", "--csv", str(path), "--seed-column", "run", "--bootstrap", "0", "--holdout", "none",
                     "--no-plots", "--out", str(seeds)]) == 0
    assert json.loads((seeds / "fit.json").read_text())["n_points"] == 225


def test_misfitting_as_shipped_needs_the_tuning_column(reference_data, tmp_path, capsys):
    path = reference_data / "misfitting_scaling_results_last_ckpt_only.csv"
    args = ["fit", "--csv", str(path), "--column", "N=N_no_emb", "--default-optimizer", "open_lm", "--law",
            "chinchilla", "--bootstrap", "0", "--holdout", "none", "--no-plots"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 2
    assert "several rows" in capsys.readouterr().err
    assert cli.main(args + ["--tuning-column", "peak_lr", "--out", str(tmp_path / "b")]) == 0
    doc = json.loads((tmp_path / "b" / "fit.json").read_text())
    assert doc["n_cells"] == 81 and doc["separate"]["open_lm"]["E"] == 0.0
    assert any("edge of the swept range" in w for w in doc["warnings"])


# ----------------------------------------------------------------------------- nothing exits 1

def _sweep_design(path: Path) -> list[dict]:
    """The (optimizer, N, D, hyperparameters) points a shipped sweep config asks for, N from the
    preset name (llama/250k -> 2.5e5), so every shipped sweep's design gets fitted here."""
    cfg = yaml.safe_load(path.read_text())
    extra = cfg.get("extra_axes") or {}
    scale = {"k": 1e3, "m": 1e6, "b": 1e9}
    if "proxy_optimizer" in extra:
        return [{"optimizer": o, "N": float(n), "D": float(d), "hp": {}}
                for o in extra["proxy_optimizer"] for n in extra.get("N", [64]) for d in extra.get("steps", [32])]
    models = cfg.get("models") or ["llama/1m"]
    points = []
    for model in models:
        size = model.split("/")[1]
        N = float(size[:-1]) * scale[size[-1].lower()]
        budgets = [float(t) for t in cfg.get("tokens") or []] or \
            [N * float(r) for r in cfg.get("tokens_per_param") or [20]]
        for opt in cfg.get("optimizers") or ["adamw"]:
            axes = (cfg.get("optimizer_axes") or {}).get(opt) or {}
            settings = [{}] if not axes else [{k: v} for k, values in axes.items() for v in values]
            for D in budgets:
                for hp in settings:
                    points.append({"optimizer": opt, "N": N, "D": D, "hp": hp})
    return points


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted((REPO / "configs" / "sweep").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_sweep_design_fits_without_exit_1(config, tmp_path, capsys):
    rng = np.random.default_rng(0)
    points = _sweep_design(config)
    for i, p in enumerate(points):
        lr = next(iter(p["hp"].values()), 1.0)
        loss = (2.0 + 60 / p["N"] ** 0.3 + 300 / p["D"] ** 0.3) * (1 + 0.02 * abs(np.log(lr))) \
            * np.exp(0.002 * rng.standard_normal())
        write_record(tmp_path / "sweep" / "runs" / f"r{i:03d}", RunRecord.from_json({
            "run_id": f"r{i:03d}", "task": "llm", "status": "done", "optimizer": p["optimizer"], "N": p["N"],
            "N_non_embedding": p["N"], "D": p["D"], "final_val_loss": loss, "seed": 0,
            "hyperparameters": p["hp"] or {"lr_mult": 1.0}, "sweep": config.stem}))
    optimizers = sorted({p["optimizer"] for p in points})
    reference = "adamw" if "adamw" in optimizers else optimizers[0]
    out = tmp_path / "fit"
    code = cli.main(["fit", "--runs", str(tmp_path / "sweep"), "--reference", reference, "--bootstrap", "30",
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "fit.json").read_text())
    fits = ([doc["shared"]] if doc["shared"] else []) + list(doc["separate"].values())
    assert fits and all(f["identifiability"]["verdict"] in ("identified", "weak", "not identified") for f in fits)


@pytest.mark.parametrize("name,args", [
    ("epoch_chinchilla_svg_extracted_data.csv", ["--column", "N=Model Size", "--column", "flops=Training FLOP",
                                                 "--default-optimizer", "chinchilla", "--law", "chinchilla"]),
    ("marin_fantastic_optimizers_final_losses.csv", MARIN),
    ("misfitting_scaling_results_last_ckpt_only.csv", ["--column", "N=N_no_emb", "--default-optimizer", "open_lm",
                                                       "--tuning-column", "peak_lr", "--law", "chinchilla"]),
    ("porian2024_optimal_pairs.csv", ["--column", "N=N_opt", "--column", "D=D_opt", "--column", "loss=loss_opt",
                                      "--default-optimizer", "adamw"]),
    ("porian2024_published_fits.csv", []),
    ("colpret_datablations_contour_losses.csv", ["--column", "N=num_params", "--column", "D=token_num",
                                                 "--column", "loss=openLM_loss", "--default-optimizer", "adamw"]),
])
def test_no_reference_file_exits_1(reference_data, tmp_path, capsys, name, args):
    code = cli.main(["fit", "--csv", str(reference_data / name), *args, "--bootstrap", "20", "--no-plots",
                     "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:  # input a fit cannot read as given: one line that says what to do
        assert err.startswith("error: ") and err.count("\n") == 1
