"""The trainer end to end on a tiny model: record, metrics, W&B, divergence, bad input, branching."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from optlaw import records
from optlaw.config import compose
from optlaw.errors import UserError
from optlaw.entry.points import run_point
from optlaw.entry import train_cmd as train_cli
from optlaw.train.metrics import read_metrics

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_llm import TINY_LLM, one_torch_thread  # noqa: E402,F401  (autouse fixture)

TINY = TINY_LLM + ["batch.global_tokens=256", "step_cost.repeats=2"]


def train(run_dir: Path, *overrides: str) -> records.LLMRunRecord:
    return run_point(compose("train", TINY + [f"run_dir={run_dir}", *overrides]))


def test_run_writes_record_metrics_routing_and_wandb(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    record = train(run_dir, "budget.tokens=5120", "log.every_steps=5", "wandb.mode=offline", "sweep_name=unit")
    on_disk = records.read_record(run_dir)
    assert on_disk == record  # the returned record is what is on disk
    assert on_disk.status == "done" and on_disk.reason is None
    assert on_disk.run_id.startswith("llama-1m-adamw-5p12ktok-s0-")
    assert on_disk.run_id == records.make_run_id(on_disk.config, on_disk.run_id.rsplit("-", 1)[0])
    assert on_disk.D == on_disk.tokens_trained == 5120 and on_disk.steps == 20
    assert on_disk.N == on_disk.N_non_embedding < on_disk.N_total
    assert on_disk.flops == on_disk.flops_per_token * 5120
    assert [e["step"] for e in on_disk.evals] == [5, 10, 15, 20]
    assert on_disk.final_val_loss == on_disk.evals[-1]["val_loss"]
    assert on_disk.evals[-1]["val_loss"] < on_disk.evals[0]["val_loss"]
    assert on_disk.final_val_loss > on_disk.entropy_floor_nats > 0
    for key in ("mean_fwd_bwd_s", "mean_optimizer_step_s", "mean_data_wait_s", "tokens_per_s", "step_cost_ratio", "wall_time_s"):
        assert getattr(on_disk, key) is not None and getattr(on_disk, key) >= 0, key
    assert set(on_disk.step_cost) == {"fwd_bwd_s", "optimizer_step_s", "adamw_step_s", "repeats", "window_steps"}
    assert on_disk.hyperparameters["name"] == "adamw"
    assert on_disk.sweep == "unit" and on_disk.branch is None
    assert set(on_disk.versions) == {"python", "torch", "transformers", "optlaw"}
    assert set(records.FIT_FIELDS) <= set(json.loads((run_dir / "run.json").read_text()))

    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert set(rows[0]["lr"]) == {"hidden_matrix", "embedding", "head", "norm_bias"}
    for key in ("train_loss", "grad_norm", "tokens_per_s", "fwd_bwd_s", "optimizer_step_s", "data_wait_s"):
        assert rows[-1][key] is not None
    assert rows[-1]["mfu"] is None  # CPU: no peak to compare against

    routing = json.loads((run_dir / "routing.json").read_text())
    names = [r["param"] for r in routing]
    assert len(names) == len(set(names)) == 12
    assert (run_dir / "config.yaml").read_text().count("tokens: 5120") == 1

    wandb_runs = list((Path(tmp_path) / "wandb").rglob(f"*{on_disk.run_id}*"))
    assert wandb_runs, "the offline W&B run was not written under WANDB_DIR"


def test_rerun_of_a_finished_point_does_nothing(tmp_path):
    run_dir = tmp_path / "run"
    first = train(run_dir, "budget.tokens=1024", "step_cost.repeats=0")
    assert first.step_cost_ratio is None and first.step_cost["repeats"] == 0  # measuring the cost is optional
    second = train(run_dir, "budget.tokens=1024", "step_cost.repeats=0")
    assert second.updated_at == first.updated_at and second.status == "done"


def test_divergence_ends_the_run_with_a_reason(tmp_path):
    run_dir = tmp_path / "run"
    record = train(run_dir, "budget.tokens=5120", "optimizer.lr_mult=3000", "schedule.warmup_fraction=0",
                   "divergence.max_loss_ratio=1.5")
    assert record.status == "diverged"
    assert "divergence.max_loss_ratio" in record.reason or "non-finite" in record.reason
    assert record.final_val_loss is None and record.steps_done < record.steps
    # A later, sane point is untouched by the diverged one.
    assert train(tmp_path / "sane", "budget.tokens=1024").status == "done"


def test_failure_marks_the_record_failed_and_reraises(tmp_path, monkeypatch):
    from optlaw.train import loop

    def broken_step(self, step):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop.TrainLoop, "train_step", broken_step)
    with pytest.raises(RuntimeError, match="boom"):
        train(tmp_path / "run", "budget.tokens=1024")
    record = records.read_record(tmp_path / "run")
    assert record.status == "failed" and "boom" in record.reason


def test_help_prints_usage(capsys):
    assert train_cli.main(["--help"]) == 0
    assert "usage: optlaw train" in capsys.readouterr().out


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model=llama/7x"], "unknown model 'llama/7x'"),
        (["optimizer=adamq"], "unknown optimizer 'adamq'"),
        (["data=wikipedia"], "unknown data 'wikipedia'"),
        (["budget.tokenz=5"], "config key 'budget.tokenz' does not exist"),
        (["budget.tokens=5120", "batch.global_tokens=300"], "batch.global_tokens=300"),
        (["budget.tokens=100"], "smaller than one optimizer step"),
        (["budget.tokens=5120", "budget.tokens_per_param=20"], "exactly one of budget.tokens"),
        (["budget.tokens=5120", "data=text", "data.files=[/nonexistent/corpus.txt]"], "nonexistent"),
        (["budget.tokens=5120", "data=text", "data.files=[{corpus}]", "data.tokenizer=/nonexistent/tok.json"], "tokenizer"),
        (["budget.tokens=5120", "schedule.name=step"], "schedule.name"),
        (["budget.tokens=5120", "precision=fp16"], "precision='fp16'"),
        (["budget.tokens=5120", "wandb.mode=on"], "wandb.mode='on'"),
        (["budget.tokens=5120", "init.from_checkpoint=/nonexistent.pt"], "init.from_checkpoint"),
    ],
)
def test_bad_input_is_one_line_error_before_compute(tmp_path, overrides, match):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n\nsecond document here\n")
    overrides = [o.replace("{corpus}", str(corpus)) for o in overrides]
    run_dir = tmp_path / "run"
    argv = TINY + [f"run_dir={run_dir}", f"data.cache_dir={tmp_path / 'cache'}" if any(o.startswith("data=text") for o in overrides) else "seed=0", *overrides]
    with pytest.raises(UserError, match=match) as info:
        train_cli.main(argv)
    assert "\n" not in str(info.value)
    assert not (run_dir / "checkpoints").exists() and records.read_record(run_dir) is None


def _wsd(run_dir: Path, tokens: int, *extra: str) -> records.LLMRunRecord:
    return train(run_dir, f"budget.tokens={tokens}", "schedule.name=wsd", "schedule.warmup_tokens=512",
                 "schedule.decay_fraction=0.25", "eval.fractions=[]", *extra)


def test_branch_from_parent_checkpoint_equals_training_from_scratch(tmp_path):
    # Child: 16 steps, decay starts at step 12 (3072 tokens). Parent: 24 steps, flat until step 18.
    parent = _wsd(tmp_path / "parent", 6144, "checkpoint.keep_at_tokens=[3072]")
    kept = tmp_path / "parent" / "checkpoints" / "tokens_3072.pt"
    assert kept.exists()
    scratch = _wsd(tmp_path / "scratch", 4096)
    branch = _wsd(tmp_path / "branch", 4096, f"init.from_checkpoint={kept}")
    assert branch.branch == {"parent_run_id": parent.run_id, "from_step": 12, "from_tokens": 3072,
                                "from_checkpoint": str(kept)}
    assert branch.run_id == scratch.run_id  # init.from_checkpoint is not part of the point's identity
    assert branch.final_val_loss == scratch.final_val_loss
    assert branch.tokens_trained == 4096


def test_branch_with_a_different_schedule_is_refused(tmp_path):
    _wsd(tmp_path / "parent", 6144, "checkpoint.keep_at_tokens=[3072]")
    kept = tmp_path / "parent" / "checkpoints" / "tokens_3072.pt"
    with pytest.raises(UserError, match="schedule differs"):
        train(tmp_path / "child", "budget.tokens=4096", "schedule.name=cosine", f"init.from_checkpoint={kept}")
    with pytest.raises(UserError, match="different 'optimizer'"):
        _wsd(tmp_path / "child2", 4096, "optimizer.lr_mult=2", f"init.from_checkpoint={kept}")


def test_generic_optimizers_of_two_classes_stay_two_optimizers(tmp_path):
    # optimizer=generic names its class in the run id, the record and so the fit: NAdam and Lamb
    # runs of the same cell are two optimizers, not one "generic" cell with a tuning winner.
    from optlaw.fit import load_runs

    made = {}
    for cls in ("torch.optim.NAdam", "torch_optimizer.Lamb", "pytorch_optimizer.Lamb"):
        made[cls] = train(tmp_path / "sweep" / cls, "budget.tokens=1024", "step_cost.repeats=0",
                          "optimizer=generic", f"optimizer.cls={cls}")
    names = {"torch.optim.NAdam": "generic-NAdam", "torch_optimizer.Lamb": "generic-torch_optimizer.Lamb",
             "pytorch_optimizer.Lamb": "generic-pytorch_optimizer.Lamb"}  # two libraries' Lamb: two names
    for cls, record in made.items():
        assert record.status == "done" and record.optimizer == names[cls]
        assert record.run_id.startswith(f"llama-1m-{names[cls].replace('.', '_')}-1p02ktok-s0-")
    table = load_runs(tmp_path / "sweep")
    assert table.optimizers == sorted(names.values()) and len(table) == 3 and table.tuning == []
    # Non-generic optimizers keep their ids (pinned in test_config) and names.
    assert train(tmp_path / "adamw", "budget.tokens=1024", "step_cost.repeats=0").optimizer == "adamw"
