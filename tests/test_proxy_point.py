"""Proxy grid points through `optlaw train task=...`: valid records the fit stage can read."""

import json

import pytest

from optlaw.entry import cli
from optlaw.config import compose, to_plain
from optlaw.records import DONE, FIT_FIELDS, read_record


def _train(*overrides) -> int:
    return cli.main(["train", *overrides])


def test_quadratic_point_via_train_writes_a_done_record(tmp_path):
    run_dir = tmp_path / "q"
    code = _train("task=quadratic", "proxy_optimizer=kron", "N=64", "steps=32", "s=1.2", "feature_dim=4096",
                  "irreducible_loss=0.05", f"run_dir={run_dir}", "sweep_name=demo")
    assert code == 0
    rec = read_record(run_dir)
    assert rec is not None and rec.status == DONE
    missing = [k for k in FIT_FIELDS if k not in json.loads((run_dir / "run.json").read_text())]
    assert not missing, missing
    assert rec.task == "quadratic" and rec.optimizer == "kron" and rec.sweep == "demo"
    assert rec.N == rec.N_total == rec.N_non_embedding == 64
    assert rec.D == rec.tokens_trained == 32
    assert rec.branch is None and rec.flops > 0 and rec.step_cost_ratio > 0
    parts = rec.loss_parts
    assert rec.final_val_loss == pytest.approx(sum(parts.values()))
    assert parts["irreducible"] == 0.05
    assert 0 < rec.hyperparameters["eta_multiplier"] < 2
    assert rec.run_id.startswith("quadratic-kron-")


def test_random_feature_point_via_train_and_fit_stage_reads_it(tmp_path):
    from optlaw.fit import load_runs

    for name in ("gd", "ngd"):
        assert _train("task=random_features", f"proxy_optimizer={name}", "N=32", "steps=6", "input_dim=256",
                      f"run_dir={tmp_path / name}") == 0
    recs = {n: read_record(tmp_path / n) for n in ("gd", "ngd")}
    assert recs["gd"].step_cost_ratio == 1.0
    assert recs["ngd"].final_val_loss < recs["gd"].final_val_loss
    table = load_runs([tmp_path])
    assert sorted(table.optimizers) == ["gd", "ngd"] and len(table) == 2


def test_same_point_same_run_id_and_seed_changes_it():
    from optlaw.proxy.point import run_label
    from optlaw.records import make_run_id

    a = to_plain(compose("task_quadratic", ["N=64"]))
    b = to_plain(compose("task_quadratic", ["N=64", "run_dir=/elsewhere"]))
    c = to_plain(compose("task_quadratic", ["N=64", "seed=1"]))
    ids = [make_run_id(x, run_label(x)) for x in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]


def test_bad_proxy_input_fails_in_one_line_before_any_run_dir(tmp_path, capsys):
    run_dir = tmp_path / "never"
    assert _train("task=quadratic", "proxy_optimizer=adamw", f"run_dir={run_dir}") == 2
    err = capsys.readouterr().err
    assert "unknown proxy optimizer 'adamw'" in err and err.count("\n") == 1
    assert _train("task=random_features", "s=0", f"run_dir={run_dir}") == 2
    assert "spectral exponent" in capsys.readouterr().err
    assert _train("task=quadratic", "N=100", "feature_dim=50", f"run_dir={run_dir}") == 2
    assert "feature_dim" in capsys.readouterr().err
    assert not run_dir.exists()


def test_quadratic_study_end_to_end_small(tmp_path):
    from optlaw.proxy.quadratic_study import run_study

    cfg = to_plain(compose("proxy/quadratic", [
        "optimizers=[gd,kron,ngd]", "N_values=[16,32,64,128,256]", "D_values=[4,16,64,256,1024]",
        "feature_dim=65536", "bootstrap=0", "timing_repeats=5", "progress=false",
        "regimes=[{name:damped,damping:0.1}]"]))
    result = run_study(cfg, tmp_path)
    rows = {r["optimizer"]: r for r in result["regimes"]["damped"]["rows"]}
    assert set(rows) == {"gd", "kron", "ngd"}
    # Damped: ngd is rescaled GD, its fitted rho_D against gd is large and of the predicted size.
    assert rows["ngd"]["rho_D_pred"] == pytest.approx(11.0)
    assert 3.0 < rows["ngd"]["rho_D_fit"] < 30.0
    damped = result["regimes"]["damped"]
    assert damped["shared_law_exists"] is True and isinstance(damped["findings"], list)
    assert "## Findings" in (tmp_path / "report.md").read_text()
    assert len(list((tmp_path / "runs" / "damped").rglob("run.json"))) == 3 * 25
    assert json.loads((tmp_path / "quadratic.json").read_text())["setting"]["s"] == 1.5
    assert (tmp_path / "quadratic_loss_vs_D.png").stat().st_size > 0


def test_a_crash_leaves_a_failed_record(tmp_path, monkeypatch):
    from optlaw.proxy import point

    def boom(cfg):
        raise RuntimeError("linear algebra exploded")

    monkeypatch.setattr(point, "solve_point", boom)
    cfg = to_plain(compose("task_quadratic", [f"run_dir={tmp_path / 'x'}"]))
    with pytest.raises(RuntimeError):
        point.run(cfg)
    rec = read_record(tmp_path / "x")
    assert rec.status == "failed" and "exploded" in rec.error
