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
    assert tail[1].startswith("shared law: L = ")
    assert "muon rho_N" in tail[2]
    assert tail[3].startswith("compute multiplier vs adamw")

    # Rerun: every point is reused, only the fit is redone.
    assert cli.main(args) == 0
    second = capsys.readouterr().out
    assert "nothing to run" in second
    assert "start " not in second
