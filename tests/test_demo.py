"""`optlaw demo` end to end on a one-minute sweep: report, summary, and reuse on rerun."""

import json

import pytest

from optlaw.entry import cli


@pytest.mark.slow
def test_demo_runs_fits_reports_and_reuses_finished_points(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--sweep", "demo_smoke", "--bootstrap", "20"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    doc = json.loads((out / "fit" / "fit.json").read_text())
    assert doc["n_points"] == 12
    assert set(doc["optimizers"]) == {"adamw", "muon"}
    assert doc["optimizers"]["adamw"]["rho_N"] == pytest.approx(1.0)
    assert (out / "fit" / "report.md").exists()
    assert list((out / "fit").glob("*.png"))
    tail = first.strip().splitlines()[-4:]
    assert tail[0].startswith("report: ")
    assert tail[1].startswith("Shared law: L = ")
    assert tail[2].startswith("Muon ") and "AdamW" in tail[2] and "tokens" in tail[2] and "compute" in tail[2]
    assert tail[3].startswith("Checks: ") and "rho_D <= 2x wide" in tail[3]
    assert "demo criteria (issue 13):" in first

    # Rerun: every point is reused, only the fit is redone.
    assert cli.main(args) == 0
    second = capsys.readouterr().out
    assert "nothing to run" in second
    assert "start " not in second


def test_demo_chains_the_sweep_and_the_fit_as_functions_and_reads_no_files(tmp_path, monkeypatch, capsys):
    # Wiring only (the end-to-end run is above): the demo hands typed requests to run_sweep and
    # fit_to_dir and summarises the study it gets back; the stand-in fit writes no fit.json to read.
    from pathlib import Path
    from types import SimpleNamespace

    from optlaw.entry import fit_cmd, sweep_cmd
    from optlaw.fit import study as fit_study

    doc = {"reference": "adamw", "n_points": 12,
           "shared": {"E": 2.0, "A": 3.0, "B": 4.0, "alpha": 0.3, "beta": 0.2},
           "optimizers": {"adamw": {"rho_N": 1.0, "rho_D": 1.0},
                          "muon": {"rho_N": 1.5, "rho_N_ci": [1.1, 2.0], "rho_D": 2.0, "rho_D_ci": [1.5, 3.0],
                                   "compute_multiplier": 1.2, "compute_multiplier_ci": [0.9, 1.6]}}}
    seen = {}

    def run_sweep(request):
        seen["sweep"] = request
        return sweep_cmd.SweepOutcome(Path(request.sweep_dir), ("p1", "p2"), {"p1": "done", "p2": "failed"},
                                      finished=False)

    def fit_to_dir(request):
        seen["fit"] = request
        return SimpleNamespace(document=doc)

    monkeypatch.setattr(sweep_cmd, "run_sweep", run_sweep)
    monkeypatch.setattr(fit_cmd, "fit_to_dir", fit_to_dir)
    monkeypatch.setattr(fit_study, "summarize", lambda document: "fit summary")
    out = tmp_path / "demo"
    code = cli.main(["demo", "--out", str(out), "--sweep", "demo_smoke", "--bootstrap", "20", "seeds=[0]"])
    assert code == 1  # a point failed: the fit runs on what finished, and the exit status says so
    request = seen["sweep"]
    assert (request.sweep, request.launcher, Path(request.sweep_dir)) == ("demo_smoke", "local", out / "sweep")
    assert request.overrides == ("launcher.max_parallel=2", "seeds=[0]")
    fit = seen["fit"]
    assert [Path(r) for r in fit.runs] == [out / "sweep"] and Path(fit.out) == out / "fit"
    assert (fit.law, fit.bootstrap, fit.wandb) == ("compute", 20, "disabled")
    lines = capsys.readouterr().out.strip().splitlines()
    assert "some points did not finish" in "\n".join(lines) and "fit summary" in lines
    assert lines[-3] == "Shared law: L = 2.000 + 3/(rho_N N)^0.300 + 4/(rho_D D)^0.200  (12 runs, reference AdamW)"
    assert lines[-2] == ("Muon reaches AdamW's loss with 2.00x [1.50, 3.00] fewer tokens and 1.50x [1.10, 2.00] fewer "
                         "parameters (not resolved from 1: compute 1.20x [0.90, 1.60]).")
    assert lines[-1].startswith("Checks: shared law identified n/a, separate fits ill-conditioned n/a, rho_D <= 2x wide yes, "
                                "rho_N <= 3x wide yes, exponents exclude 0.03 n/a")
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_after_the_checkpoint_without_fitting_partial_data(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "optlaw", "demo", "--out", str(out), "--sweep", "demo_smoke", "--max-parallel", "1",
           "checkpoint.every_steps=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 300
    while time.time() < deadline:  # Ctrl-C once a point has trained a step
        if any(p.read_text().strip() for p in (out / "sweep" / "runs").glob("*/metrics.jsonl")):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("no point started training")
    proc.send_signal(signal.SIGINT)
    text = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, text
    assert "interrupted: running points checkpointed" in text
    assert "fitting laws" not in text and not (out / "fit").exists()
