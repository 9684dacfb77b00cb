"""FSDP2 (perf.sharding=fsdp) on CPU with gloo: the same training as one process, checkpoints
that are ordinary full checkpoints, an exact resume; optimizers that need whole matrices refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optlaw import records
from optlaw.config import compose
from optlaw.entry.points import run_point
from optlaw.train import checkpoint as ckpt
from optlaw.train.metrics import read_metrics

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_llm import TINY_LLM, one_torch_thread  # noqa: E402,F401  (autouse fixture)

TINY = TINY_LLM + ["step_cost.repeats=1", "batch.global_tokens=256", "budget.tokens=3072", "log.every_steps=1",
                   "eval.fractions=[0.5]"]


def _torchrun(run_dir: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "optlaw", "train", *TINY, "perf.sharding=fsdp", f"run_dir={run_dir}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_rank_fsdp_matches_one_process_and_resumes_exactly(tmp_path):
    single = run_point(compose("train", TINY + ["checkpoint.every_steps=6", "checkpoint.keep=2",
                                                f"run_dir={tmp_path / 'single'}"]))
    proc = _torchrun(tmp_path / "fsdp", ["checkpoint.every_steps=6", "checkpoint.keep=2"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FSDP2 over 2 ranks" in proc.stdout
    sharded = records.read_record(tmp_path / "fsdp")
    single_losses = [r["train_loss"] for r in read_metrics(tmp_path / "single")]
    sharded_losses = [r["train_loss"] for r in read_metrics(tmp_path / "fsdp")]
    assert len(sharded_losses) == len(single_losses) == 12
    assert sharded_losses == pytest.approx(single_losses, rel=1e-4)
    assert [e["val_loss"] for e in sharded.evals] == pytest.approx([e["val_loss"] for e in single.evals], rel=1e-4)
    # Its checkpoints hold whole tensors: they load into an unsharded model.
    final = ckpt.load(ckpt.step_path(tmp_path / "fsdp", 12))
    reference = ckpt.load(ckpt.step_path(tmp_path / "single", 12))
    for name, tensor in reference["model"].items():
        assert final["model"][name].shape == tensor.shape
        torch.testing.assert_close(final["model"][name], tensor, rtol=1e-3, atol=1e-5)
    # Resume a sharded run from its half-way checkpoint: bitwise the uninterrupted sharded run.
    resumed = tmp_path / "resumed"
    ckpt.checkpoint_dir(resumed).mkdir(parents=True)
    shutil.copy(ckpt.step_path(tmp_path / "fsdp", 6), ckpt.step_path(resumed, 6))
    proc = _torchrun(resumed, ["checkpoint.every_steps=6", "checkpoint.keep=2"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resuming from step 6" in proc.stdout
    again = ckpt.load(ckpt.step_path(resumed, 12))
    for name, tensor in final["model"].items():
        assert torch.equal(again["model"][name], tensor), name
    for name, state in final["optimizer"]["optimizers"].items():
        for idx, entry in state["state"].items():
            for key, value in entry.items():
                assert torch.equal(again["optimizer"]["optimizers"][name]["state"][idx][key], value), (name, idx, key)


@pytest.mark.parametrize("optimizer", ["muon", "shampoo", "soap"])
def test_fsdp_with_an_optimizer_that_needs_whole_matrices_is_one_error_line_exit_2(tmp_path, optimizer):
    argv = [sys.executable, "-m", "optlaw", "train", *TINY, "perf.sharding=fsdp", f"optimizer={optimizer}",
            f"run_dir={tmp_path / optimizer}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: perf.sharding=fsdp supports only adamw;") and optimizer in lines[0]
    assert not (tmp_path / optimizer).exists()  # refused before anything was built or written
