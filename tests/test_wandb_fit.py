"""The fit's W&B run, read back from its offline file with W&B's own reader."""

from __future__ import annotations

import json
import os
import sys

from optlaw.entry import cli
from optlaw.report.wandb_log import fit_run_name, headline, report_tables

sys.path.insert(0, os.path.dirname(__file__))
from _wandb_files import RunFile, run_files  # noqa: E402
from test_fit_cli import write_sweep  # noqa: E402


def test_fit_run_is_named_grouped_and_carries_headline_tables_plots_and_artifact(tmp_path):
    sweep = write_sweep(tmp_path / "syn")
    out = tmp_path / "fit"
    assert cli.main(["fit", "--runs", str(sweep), "--law", "compute", "--bootstrap", "20", "--out", str(out),
                     "--wandb", "offline"]) == 0
    doc = json.loads((out / "fit.json").read_text())
    (path,) = run_files(tmp_path / "wandb")
    run = RunFile(path)
    assert run.run["display_name"] == "fit-group-from-records" and run.run["job_type"] == "fit"
    assert run.run["run_group"] == "group-from-records" and run.exit_code == 0

    # Headline numbers: exponents, each rho and compute multiplier with its interval.
    s = run.summary
    assert s["shared/alpha"] == doc["shared"]["alpha"] and s["shared/beta"] == doc["shared"]["beta"]
    for opt, o in doc["optimizers"].items():
        for key in ("rho_N", "rho_D", "compute_multiplier"):
            assert s[f"optimizers/{opt}/{key}"] == o[key], (opt, key)
            if o[f"{key}_ci"]:
                assert [s[f"optimizers/{opt}/{key}_lo"], s[f"optimizers/{opt}/{key}_hi"]] == o[f"{key}_ci"]
    assert s["separate/lion/alpha"] == doc["separate"]["lion"]["alpha"]
    verdicts = {f"identifiability/{where}/{name}": entry["identifiability"]["verdict"]
                for where in ("optimizers", "separate") for name, entry in doc[where].items()
                if (entry.get("identifiability") or {}).get("verdict")}
    if (doc["shared"].get("identifiability") or {}).get("verdict"):
        verdicts["identifiability/shared"] = doc["shared"]["identifiability"]["verdict"]
    assert verdicts, "fit.json has identifiability verdicts"
    assert {k: s.get(k) for k in verdicts} == verdicts

    # Every table of report.md, with its columns, as a W&B table.
    tables = report_tables((out / "report.md").read_text())
    assert {"report/shared_exponent_law", "report/shared_exponent_law_2", "report/separate_chinchilla_laws",
            "report/conditioning", "report/runs_not_fitted"} <= set(tables)
    assert "compute multiplier" in tables["report/shared_exponent_law_2"][0]
    for key, (header, rows) in tables.items():
        assert s[f"{key}._type"] == "table-file" and s[f"{key}.ncols"] == len(header), key
        logged = json.loads(next(path.parent.glob(f"files/{s[f'{key}.path']}")).read_text())
        assert logged["columns"] == header and logged["data"] == rows, key

    # The plots, and fit.json + report.md as an artifact of type fit named after the run.
    assert {"rho", "loss_vs_D", "loss_vs_N", "residuals", "frontier"} <= {
        k.split("/")[1].split(".")[0] for k in s if k.startswith("plots/")}
    (artifact,) = [a for a in run.artifacts if a["type"] == "fit"]
    assert artifact["name"] == "fit-group-from-records" and "latest" in artifact["aliases"]
    assert sorted(c["path"] for c in artifact["manifest"]["contents"]) == ["fit.json", "report.md"]


def test_names_headline_and_report_tables_from_documents():
    assert fit_run_name("sweep 7/a", None) == "fit-sweep_7_a"
    assert fit_run_name(None, "/data/runs.csv") == "fit-runs"
    doc = {"n_points": 3, "law": "shared", "shared": {"alpha": 0.3, "beta": 0.4, "ci": {"alpha": [0.2, 0.4]},
                                                      "identifiability": {"verdict": "weak", "reasons": ["x"]}},
           "optimizers": {"muon": {"rho_N": 1.2, "rho_N_ci": [1.1, 1.3], "rho_D": 0.9, "rho_D_ci": None}},
           "separate": {"muon": {"alpha": 0.31, "identifiability": {"verdict": "not identified"}}}}
    numbers = headline(doc)
    assert numbers["shared/alpha_lo"] == 0.2 and numbers["optimizers/muon/rho_N_hi"] == 1.3
    assert "optimizers/muon/rho_D_lo" not in numbers and numbers["optimizers/muon/rho_D"] == 0.9
    assert numbers["identifiability/shared"] == "weak"
    assert numbers["identifiability/separate/muon"] == "not identified"
    md = "# T\n\n## A b\n\n| x | y |\n|---|---|\n| 1 | [2, 3] |\n\ntext\n\n| z |\n|---|\n| 4 |\n"
    assert report_tables(md) == {"report/a_b": (["x", "y"], [["1", "[2, 3]"]]), "report/a_b_2": (["z"], [["4"]])}
