"""W&B as its users read it: the trainer's runs, read back from the offline files with W&B's own reader."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from optlaw import records
from optlaw.config import compose
from optlaw.entry.points import run_point
from optlaw.train.metrics import read_metrics
from optlaw.train.wandb_mirror import NAMESPACES

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_llm import TINY_LLM, one_torch_thread  # noqa: E402,F401  (autouse fixture)
from _wandb_files import RunFile, run_files  # noqa: E402

TINY = TINY_LLM + ["batch.global_tokens=256", "step_cost.repeats=0", "wandb.mode=offline", "sweep_name=wb"]


def train(run_dir: Path, *overrides: str) -> records.LLMRunRecord:
    return run_point(compose("train", TINY + [f"run_dir={run_dir}", *overrides]))


def test_metrics_are_namespaced_and_charted_against_tokens(tmp_path):
    record = train(tmp_path / "run", "budget.tokens=2560", "log.every_steps=2")
    (path,) = run_files(tmp_path / "wandb")
    run = RunFile(path)
    assert run.run["run_id"] == record.wandb_id and run.run["display_name"] == record.run_id
    assert run.run["run_group"] == "wb" and run.exit_code == 0
    # tokens is the default x-axis of every namespace; step is defined as a metric of its own.
    assert run.metric_definition("tokens") and run.metric_definition("step")
    for namespace in NAMESPACES:
        definition = run.metric_definition(f"{namespace}/*")
        assert definition and definition["step_metric"] == "tokens", (namespace, run.metrics)
    keys = run.logged_keys()
    assert {"tokens", "step"} <= keys
    outside = {k for k in keys - {"tokens", "step"} if k.split("/")[0] not in NAMESPACES}
    assert not outside, f"metrics outside the namespaces: {sorted(outside)}"
    for key in ("train/loss", "val/loss", "optim/grad_norm", "lr/hidden_matrix", "lr/embedding", "lr/schedule_factor",
                "perf/tokens_per_s", "perf/step_s", "perf/fwd_bwd_s", "perf/optimizer_step_s", "perf/data_wait_s"):
        assert key in keys, key
    assert not {"train_loss", "val_loss", "tokens_per_s"} & keys  # the old flat names are gone
    rows = [item for item in run.history if "train/loss" in item]
    local = read_metrics(tmp_path / "run")
    assert [(r["step"], r["tokens"], r["train/loss"]) for r in rows] == [(r["step"], r["tokens"], r["train_loss"]) for r in local]
    assert [r["tokens"] for r in rows][:2] == [512, 1024]
    # The record's fit fields sit in the summary (optlaw fit --wandb-runs reads them there).
    assert run.summary["final_val_loss"] == record.final_val_loss and run.summary["run_id"] == record.run_id


def test_each_run_directory_is_its_own_wandb_run_and_a_resume_continues_it(tmp_path):
    first = train(tmp_path / "sweep_a" / "p", "budget.tokens=2560", "checkpoint.every_steps=4", "checkpoint.keep=3")
    second = train(tmp_path / "sweep_b" / "p", "budget.tokens=2560")
    assert first.run_id == second.run_id  # the same point ...
    assert first.wandb_id != second.wandb_id  # ... in two folders: two W&B runs
    assert first.wandb_id.startswith(first.run_id) and second.wandb_id.startswith(second.run_id)
    # Two files; their names order by start second, then by the random id, so compare as sets.
    assert sorted(RunFile(p).run["run_id"] for p in run_files(tmp_path / "wandb")) == sorted([first.wandb_id, second.wandb_id])

    # A run that stopped after its step-8 checkpoint: the resume reads its W&B id from there.
    run_dir = tmp_path / "sweep_a" / "p"
    for later in ("step_00000010.pt",):
        (run_dir / "checkpoints" / later).unlink()
    stopped = records.read_record(run_dir)
    stopped.status, stopped.final_val_loss = records.RUNNING, None
    records.write_record(run_dir, stopped)
    resumed = train(run_dir, "budget.tokens=2560", "checkpoint.every_steps=4", "checkpoint.keep=3")
    assert resumed.status == "done" and resumed.wandb_id == first.wandb_id
    files = run_files(tmp_path / "wandb")
    assert len(files) == 3
    # The resume's file is the one written last (names order by start second only).
    third = RunFile(max(files, key=lambda p: p.stat().st_mtime_ns))
    assert third.run["run_id"] == first.wandb_id
    assert [item["step"] for item in third.history if "train/loss" in item] == [10]  # it went on from step 8
