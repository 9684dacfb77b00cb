"""Trainer behaviour that needs real processes: SIGKILL + resume, SIGTERM preemption, 2-rank DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optlaw import records
from optlaw.config import compose
from optlaw.entry.points import run_point
from optlaw.train.metrics import read_metrics
from optlaw.train.signals import PREEMPTED_EXIT_CODE

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_llm import TINY_LLM, one_torch_thread  # noqa: E402,F401  (autouse fixture)

TINY = TINY_LLM + ["step_cost.repeats=1"]


def _env() -> dict[str, str]:
    # One thread per process, as in the in-process runs (bitwise equality needs the same reduction order).
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _start(run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "optlaw", "train", *TINY, f"run_dir={run_dir}", *overrides]
    return subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {path.name} appeared:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} did not appear within {timeout_s} s")
        time.sleep(0.005)


# 120 steps of 4 accumulated micro-batches: long enough that the kill lands mid-run.
LONG = ["batch.global_tokens=512", "budget.tokens=61440", "checkpoint.every_steps=4", "eval.fractions=[0.5]"]


@pytest.mark.slow
def test_sigkill_midway_then_rerun_gives_the_uninterrupted_result_exactly(tmp_path):
    reference = run_point(compose("train", TINY + LONG + [f"run_dir={tmp_path / 'reference'}"]))

    run_dir = tmp_path / "killed"
    proc = _start(run_dir, LONG)
    _wait_for(run_dir / "checkpoints" / "step_00000008.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = records.read_record(run_dir)
    assert killed.status == "running" and killed.steps_done < killed.steps, "the kill landed after the run finished"

    resumed = run_point(compose("train", TINY + LONG + [f"run_dir={run_dir}"]))
    assert resumed.status == "done"
    assert resumed.final_val_loss == reference.final_val_loss
    assert resumed.evals == reference.evals
    steps = [row["step"] for row in read_metrics(run_dir)]
    assert steps == sorted(set(steps))  # lines past the checkpoint were dropped, not duplicated
    ref_losses = {r["step"]: r["train_loss"] for r in read_metrics(tmp_path / "reference")}
    assert {r["step"]: r["train_loss"] for r in read_metrics(run_dir)} == ref_losses


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_for_requeue(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, LONG)
    _wait_for(run_dir / "checkpoints" / "step_00000004.pt", proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=240)
    if proc.returncode == 0:
        pytest.fail("the run finished before SIGTERM arrived; lengthen LONG")
    assert proc.returncode == PREEMPTED_EXIT_CODE, output
    record = records.read_record(run_dir)
    assert record.status == "running" and "SIGTERM" in record.reason
    saved = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert saved and int(saved[-1].stem.split("_")[1]) == record.steps_done
    finished = run_point(compose("train", TINY + LONG + [f"run_dir={run_dir}"]))
    assert finished.status == "done" and finished.steps_done == finished.steps


@pytest.mark.slow
def test_two_rank_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    overrides = ["batch.global_tokens=256", "budget.tokens=3072", "log.every_steps=1", "eval.fractions=[0.5]"]
    single = run_point(compose("train", TINY + overrides + [f"run_dir={tmp_path / 'single'}"]))
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "optlaw", "train", *TINY, *overrides, f"run_dir={tmp_path / 'ddp'}"]
    proc = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = records.read_record(tmp_path / "ddp")
    assert ddp.budget["world_size"] == 2 and ddp.budget["grad_accum_steps"] == 1
    assert single.budget["grad_accum_steps"] == 2
    single_losses = [r["train_loss"] for r in read_metrics(tmp_path / "single")]
    ddp_losses = [r["train_loss"] for r in read_metrics(tmp_path / "ddp")]
    assert len(single_losses) == len(ddp_losses) == 12
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4)
    assert [e["val_loss"] for e in ddp.evals] == pytest.approx([e["val_loss"] for e in single.evals], rel=1e-4)
