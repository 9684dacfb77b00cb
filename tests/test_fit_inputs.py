"""Reading run records and CSVs: bad input, excluded runs, tuning sweeps, seeds."""

from __future__ import annotations

import os
import sys

import pytest

from optlaw.errors import UserError
from optlaw.fit import WarningKind, fit_separate, fit_shared, load_csv, load_runs
from optlaw.fit.synthetic import synthetic_table
from optlaw.records import RunRecord, write_record

sys.path.insert(0, os.path.dirname(__file__))
from _wandb_stand_in import StandInApi, StandInRun  # noqa: E402


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def table_rows(table):
    return [(o, n, d, l) for o, n, d, l in zip(table.optimizer, table.N, table.D, table.loss)]


def test_missing_column_names_the_column_and_the_fix(tmp_path):
    path = write_csv(tmp_path / "r.csv", ["optimizer", "N", "loss"], [("adamw", 1e7, 3.0)])
    with pytest.raises(UserError, match=r"lacks column\(s\) D .*--column") as info:
        load_csv(path)
    assert "\n" not in str(info.value)


def test_column_mapping_reads_renamed_columns(tmp_path):
    rows = [(o, n, d, l) for o, n, d, l in table_rows(synthetic_table())]
    path = write_csv(tmp_path / "r.csv", ["opt", "N_nonembed", "D_tokens", "loss_c4"], rows)
    table = load_csv(path, {"optimizer": "opt", "N": "N_nonembed", "D": "D_tokens", "loss": "loss_c4"},
                     n_basis="non_embedding")
    assert len(table) == 75 and table.n_basis == "non_embedding"
    with pytest.raises(UserError, match="'nope' .* not in r.csv"):
        load_csv(path, {"N": "nope"})


def test_nan_nonpositive_and_duplicate_rows_are_dropped_and_the_fit_still_runs(tmp_path):
    rows = table_rows(synthetic_table(noise=0.0))
    bad = [("adamw", "nan", 1e9, 3.0), ("adamw", 1e7, -5, 3.0), ("muon", 1e7, 1e9, 0), rows[0], rows[1]]
    path = write_csv(tmp_path / "r.csv", ["optimizer", "N", "D", "loss"], rows + bad)
    table = load_csv(path)
    messages = " ".join(w.message for w in table.warnings)
    assert {w.kind for w in table.warnings} == {WarningKind.DATA}
    assert "dropped 3 row(s) with NaN or non-positive" in messages
    assert "dropped 2 duplicate row(s)" in messages
    assert len(table) == 75
    assert fit_shared(table).params["alpha"] == pytest.approx(0.34, rel=1e-3)


def test_nothing_valid_is_an_error(tmp_path):
    path = write_csv(tmp_path / "r.csv", ["optimizer", "N", "D", "loss"], [("a", 0, 1, 1), ("a", 1, 1, "nan")])
    with pytest.raises(UserError, match="no valid rows"):
        load_csv(path)


def test_reference_not_in_data_lists_the_choices():
    with pytest.raises(UserError, match="reference optimizer 'sgd' is not in the data .*adamw, lion, muon"):
        fit_shared(synthetic_table(), reference="sgd")


def test_optimizer_with_too_few_cells_is_left_out_with_a_warning():
    table = synthetic_table(noise=0.0)
    keep = (table.optimizer != "lion") | ((table.N == table.N.min()) & (table.D / table.N < 6))
    table = table.subset(keep)  # lion keeps a single cell
    shared = fit_shared(table)
    assert [w.optimizer for w in shared.warnings if "'lion' has 1 cell" in w.message] == ["lion"]
    assert "lion" not in shared.optimizers and shared.params["alpha"] == pytest.approx(0.34, rel=1e-3)
    sep = fit_separate(table)
    assert [w.kind for w in sep.warnings if "'lion' has 1 cell" in w.message] == [WarningKind.COVERAGE]
    assert sep.optimizers == ("adamw", "muon")
    with pytest.raises(UserError, match=r"no optimizer has the 5 .*\(cells: lion: 1\)"):
        fit_separate(table.subset(table.optimizer == "lion"))


# ----------------------------------------------------------------------------- run records

def record(opt, N, D, loss, seed=0, status="done", hp=None, reason=None):
    return {"run_id": f"{opt}-{N:.0f}-{D:.0f}-{seed}-{hash(str(hp)) % 1000}", "task": "llm", "status": status,
            "optimizer": opt, "family": "llama", "seed": seed, "N": N, "N_total": N * 1.5, "N_non_embedding": N,
            "D": D, "flops": 6 * N * D, "final_val_loss": loss, "step_cost_ratio": 1.0,
            "hyperparameters": hp or {"lr": 1e-3}, "sweep": "s", "branch": None, "reason": reason}


def write_sweep(root, records):
    for i, rec in enumerate(records):
        write_record(root / "runs" / f"r{i:04d}", RunRecord.from_json(rec))
    return root


def test_runs_only_done_are_fitted_and_the_rest_are_listed(tmp_path):
    t = synthetic_table(noise=0.0)
    recs = [record(o, n, d, l) for o, n, d, l in table_rows(t)]
    recs += [record("adamw", 3e7, 1e9, None, status="diverged", reason="loss 12.0 > 3x running min at step 40"),
             record("muon", 3e7, 1e9, None, status="failed", reason="CUDA OOM"),
             record("lion", 3e7, 1e9, None, status="running")]
    table = load_runs(write_sweep(tmp_path / "sweep", recs))
    assert len(table) == 75
    reasons = {r["status"]: r["reason"] for r in table.excluded}
    assert reasons["diverged"].startswith("loss 12.0") and reasons["failed"] == "CUDA OOM"
    assert reasons["running"] == "status running"


def test_runs_from_two_thread_counts_are_fitted_with_a_warning_naming_what_differs(tmp_path):
    t = synthetic_table(noise=0.0)
    cpu = {"device": "cpu", "torch": "2.13.0+cpu", "cpu": "Xeon", "flags": ["avx2"], "threads": 1}
    recs = [{**record(o, n, d, l), "machine": cpu if i % 3 else {**cpu, "threads": 2}}
            for i, (o, n, d, l) in enumerate(table_rows(t))]
    recs.append(record("adamw", 3e7, 1e9, 3.0))  # a record from before the field: not counted
    messages = [w.message for w in load_runs(write_sweep(tmp_path / "mixed", recs)).warnings]
    (mixed,) = [m for m in messages if "machine settings" in m]
    assert "2 machine settings" in mixed and "50 run(s) with threads 1" in mixed and "25 run(s) with threads 2" in mixed
    assert "torch" not in mixed  # only the keys that differ are named

    same = [{**r, "machine": cpu} for r in recs[:-1]]
    assert not [w for w in load_runs(write_sweep(tmp_path / "one", same)).warnings if "machine settings" in w.message]


def test_n_basis_picks_total_or_non_embedding(tmp_path):
    root = write_sweep(tmp_path / "s", [record("adamw", 1e7, 1e9, 3.0)])
    assert load_runs(root, n_basis="total").N[0] == pytest.approx(1.5e7)
    assert load_runs(root, n_basis="non_embedding").N[0] == pytest.approx(1e7)


def test_tuning_sweep_keeps_best_run_per_cell_and_warns_at_the_edge(tmp_path):
    recs = []
    for lr, loss in ((0.5, 3.2), (1.0, 3.1), (2.0, 3.05)):  # best at the largest lr: edge
        recs.append(record("adamw", 1e7, 1e9, loss, hp={"lr_mult": lr, "wd": 0.1}))
    for lr, loss in ((0.5, 3.0), (1.0, 2.9), (2.0, 2.95)):  # best inside the range
        recs.append(record("adamw", 2e7, 1e9, loss, hp={"lr_mult": lr, "wd": 0.1}))
    table = load_runs(write_sweep(tmp_path / "s", recs))
    edge = [w.message for w in table.warnings if "edge of the swept range" in w.message]
    assert len(edge) == 1 and "best lr_mult=2.0 is at the edge of the swept range [0.5, 1.0, 2.0]" in edge[0]
    assert sorted(table.loss.tolist()) == [2.9, 3.05]
    by_N = {c["N"]: c for c in table.tuning}
    assert by_N[1e7]["winner"] == {"lr_mult": 2.0, "wd": 0.1} and by_N[1e7]["at_edge"] == ["lr_mult"]
    assert by_N[2e7]["winner"]["lr_mult"] == 1.0 and by_N[2e7]["at_edge"] == []
    assert len(by_N[2e7]["points"]) == 3


def test_seeds_all_or_mean_and_seed_noise(tmp_path):
    recs = [record("adamw", 1e7, 1e9, 3.0 + 0.01 * s, seed=s) for s in range(3)]
    recs += [record("adamw", 2e7, 1e9, 2.8, seed=0)]
    root = write_sweep(tmp_path / "s", recs)
    all_seeds = load_runs(root, seeds="all")
    assert len(all_seeds) == 4
    assert all_seeds.seed_noise["adamw"]["cells_with_seeds"] == 1
    assert all_seeds.seed_noise["adamw"]["mean_std"] == pytest.approx(0.01)
    mean = load_runs(root, seeds="mean")
    assert len(mean) == 2 and sorted(mean.loss.tolist()) == pytest.approx([2.8, 3.01])


def test_missing_sweep_dir_and_empty_sweep_are_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no finished"):
        load_runs(tmp_path / "empty")


def test_records_without_split_parameter_counts_fall_back_to_N(tmp_path):
    rec = record("adamw", 1e7, 1e9, 3.0)
    rec["N_total"] = rec["N_non_embedding"] = None  # proxy-task records carry one N
    table = load_runs(write_sweep(tmp_path / "s", [rec]))
    assert table.N[0] == pytest.approx(1e7)


def test_wandb_runs_fit_like_local_records(tmp_path):
    from optlaw.fit import load_wandb

    t = synthetic_table(noise=0.0)
    recs = [record(o, n, d, l) for o, n, d, l in table_rows(t)]
    recs.append(record("adamw", 3e7, 1e9, None, status="diverged", reason="loss spike"))
    local = load_runs(write_sweep(tmp_path / "sweep", recs))
    api = StandInApi([StandInRun(r) for r in recs])
    remote = load_wandb("me/optlaw", group="s", api=api)
    assert api.calls == [("me/optlaw", {"group": "s"})]
    assert sorted(zip(remote.optimizer, remote.N, remote.D, remote.loss)) == sorted(
        zip(local.optimizer, local.N, local.D, local.loss))
    assert [r["reason"] for r in remote.excluded] == ["loss spike"]
    assert fit_shared(remote).params["alpha"] == pytest.approx(fit_shared(local).params["alpha"], rel=1e-9)
    with pytest.raises(UserError, match="no W&B runs in 'me/optlaw' with group 'other'"):
        load_wandb("me/optlaw", group="other", api=api)
