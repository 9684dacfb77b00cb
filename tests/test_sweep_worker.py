"""The in-process worker: many points in one process, isolated, with records a fresh process would write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optlaw import records
from optlaw.entry.sweep_cmd import main_sweep
from optlaw.sweep.manifest import read_manifest
from optlaw.sweep.worker import Worker, run_pack

sys.path.insert(0, os.path.dirname(__file__))
from test_sweep_local import user_configs  # noqa: E402,F401  (the fixture: the shared tiny sweep definition)

# Fields that measure the machine, not the training: they differ between any two runs.
TIMING_FIELDS = {"started_at", "updated_at", "wall_time_s", "tokens_per_s", "mean_fwd_bwd_s", "mean_optimizer_step_s",
                 "mean_data_wait_s", "step_cost", "step_cost_ratio", "mfu", "train_time_s"}


def comparable(run_dir: Path) -> dict:
    """A record without what differs between any two run directories: timings, the directory, its own W&B run id."""
    record = json.loads((run_dir / "run.json").read_text())
    record["config"].pop("run_dir")
    record.pop("wandb_id", None)  # one W&B run per run directory, by design
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


def _train_losses(run_dir: Path) -> list:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(m.get("step"), m.get("train_loss"), m.get("val_loss")) for m in lines]


@pytest.mark.slow
def test_worker_records_equal_a_fresh_process(user_configs, tmp_path, capsys):
    # One worker trains both points, so the second runs in a process that already trained one.
    fresh, worker = tmp_path / "fresh", tmp_path / "worker"
    assert main_sweep(["sweep=tiny", f"sweep_dir={fresh}", "launcher.in_process=false"]) == 0
    assert main_sweep(["sweep=tiny", f"sweep_dir={worker}", "launcher.max_parallel=1"]) == 0
    capsys.readouterr()
    assert (worker / "logs" / "worker-0.log").exists() and not (fresh / "logs" / "worker-0.log").exists()
    points = read_manifest(worker)["points"]
    for point in points:
        a, b = comparable(fresh / point["run_dir"]), comparable(worker / point["run_dir"])
        assert a["status"] == "done"
        assert a["final_val_loss"] == b["final_val_loss"]  # bitwise: == on the float, no tolerance
        assert a == b
        assert _train_losses(fresh / point["run_dir"]) == _train_losses(worker / point["run_dir"])
    pids = set().union(*(worker_pids(worker / "logs" / f"{point['run_id']}.log") for point in points))
    assert len(pids) == 1  # both points in one worker process


def worker_pids(log: Path) -> set[str]:
    """The worker processes a point's log says it ran in."""
    return {line.rsplit("pid ", 1)[1].rstrip(")") for line in log.read_text().splitlines() if "in worker pid" in line}


def test_a_failing_point_does_not_end_its_worker(tmp_path):
    calls = []

    def run_cli(argv):
        calls.append(argv)
        if argv[0] == "boom":
            raise RuntimeError("a point crashed")
        if argv[0] == "exit":
            sys.exit(3)
        print("trained", argv[0])
        os.environ["LEFT_BEHIND"] = "1"  # state a point leaves must not reach the next one
        return 0

    worker = Worker(run_cli)
    logs = tmp_path / "logs"
    assert worker.run(["boom"], logs / "a.log") == 1
    assert worker.run(["exit"], logs / "b.log") == 3
    assert worker.run(["ok"], logs / "c.log") == 0
    assert "LEFT_BEHIND" not in os.environ
    assert "RuntimeError: a point crashed" in (logs / "a.log").read_text()
    assert "trained ok" in (logs / "c.log").read_text() and "trained" not in (logs / "a.log").read_text()

    codes, stopped = run_pack(run_cli, [("p1", ["boom"], str(logs / "p1.log")), ("p2", ["ok"], str(logs / "p2.log"))])
    assert codes == {"p1": 1, "p2": 0} and not stopped


# One point of 12 steps with a checkpoint after each: long enough to be caught mid-training.
LONGER = ("sweep.tokens=[6144]", "checkpoint.every_steps=1")


def _launch(sweep_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "optlaw", "sweep", "sweep=tiny", f"sweep_dir={sweep_dir}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_training(sweep_dir: Path, timeout: float = 300) -> tuple[str, int]:
    """(run id, worker pid) of a point that has written at least one step of metrics."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for claim_file in (sweep_dir / "claims").glob("*.json"):
            try:
                claim = json.loads(claim_file.read_text())
            except (json.JSONDecodeError, FileNotFoundError):
                continue
            run_id = claim_file.stem
            metrics = sweep_dir / "runs" / run_id / "metrics.jsonl"
            if claim.get("child_pid") and metrics.exists() and metrics.read_text().strip():
                return run_id, int(claim["child_pid"])
        time.sleep(0.05)
    raise AssertionError("no point started training")


@pytest.mark.slow
def test_a_worker_killed_mid_point_is_replaced_and_the_point_resumed(user_configs, tmp_path):
    reference = tmp_path / "ref"
    assert main_sweep(["sweep=tiny", f"sweep_dir={reference}", "launcher.in_process=false", *LONGER]) == 0
    sweep_dir = tmp_path / "sw"
    launcher = _launch(sweep_dir, *LONGER)
    run_id, worker_pid = _wait_for_training(sweep_dir)
    os.kill(worker_pid, signal.SIGKILL)  # a hard crash: nothing in the worker can catch it
    out = launcher.communicate(timeout=600)[0]
    assert launcher.returncode == 0, out
    assert f"rerun {run_id}: its worker died (signal SIGKILL)" in out
    (point,) = read_manifest(sweep_dir)["points"]
    record = records.read_record(sweep_dir / point["run_dir"])
    assert record.status == "done"
    assert record.final_val_loss == records.read_record(reference / point["run_dir"]).final_val_loss


@pytest.mark.slow
def test_sigterm_to_the_launcher_checkpoints_the_points_in_its_workers(user_configs, tmp_path):
    sweep_dir = tmp_path / "sw"
    launcher = _launch(sweep_dir, *LONGER)
    run_id, _ = _wait_for_training(sweep_dir)
    launcher.send_signal(signal.SIGTERM)
    out = launcher.communicate(timeout=300)[0]
    assert "interrupted: running points checkpointed" in out, out
    assert launcher.returncode == 128 + signal.SIGTERM, out  # stopped, as a shell reports a SIGTERM
    log = (sweep_dir / "logs" / f"{run_id}.log").read_text()
    record = records.read_record(sweep_dir / "runs" / run_id)
    if record.status != "done":  # the signal came before the point's end
        assert "preempted by SIGTERM" in log and record.status == "running"
        assert list((sweep_dir / "runs" / run_id / "checkpoints").glob("*"))
    assert main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", *LONGER]) == 0
    for point in read_manifest(sweep_dir)["points"]:
        assert records.read_record(sweep_dir / point["run_dir"]).status == "done"
