"""Tuning sweeps that train for real (tiny models on CPU): the bracket extends to a far optimum, a killed
launcher resumes without retraining, two launchers share the rounds. The SLURM round trip is in
tests/test_slurm_sweep.py; the planner's rules on synthetic results in tests/test_sweep_tuning.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optlaw import records
from optlaw.entry.points import POINT_NAMING, run_manifest_point
from optlaw.sweep.manifest import read_manifest
from optlaw.sweep.rounds import plan_and_write, run_rounds
from optlaw.sweep.tuning import TuningPlanner
from optlaw.sweep.tuning_replay import read_tuning

# The tune_smoke settings (configs/sweep/tune_smoke.yaml): 8 optimizer steps of llama/100k.
FIXED = {"device": "cpu", "cpu_threads": 1, "batch.global_tokens": 1024, "batch.micro_batch_size": 8,
         "eval.tokens": 4096, "eval.fractions": [], "step_cost.repeats": 0, "progress": False}

SWEEP_YAML = """\
defaults:
  - /schema/sweep@_here_
  - _self_
name: {name}
models: [llama/100k]
optimizers: {optimizers}
seeds: [0]
tokens: [{tokens}]
fixed:
  device: cpu
  cpu_threads: 1
  batch.global_tokens: 1024
  batch.micro_batch_size: 8
  eval.tokens: 4096
  eval.fractions: []
  step_cost.repeats: 0
  checkpoint.every_steps: 1
  log.every_steps: 1
  progress: false
tuning:
  enabled: true
  scope: {scope}
  hyperparameters:
    - {{key: optimizer.lr_mult, start: {start}, max_extensions: {max_extensions}}}
"""


def write_tuning_sweep(root: Path, name: str, optimizers: str = "[adamw]", tokens: str = "8192",
                       scope: str = "every_cell", start: float = 0.5, max_extensions: int = 4) -> None:
    """A tuning sweep of llama/100k with tune_smoke's settings, checkpointing and logging every step."""
    (root / "sweep").mkdir(parents=True, exist_ok=True)
    (root / "sweep" / f"{name}.yaml").write_text(SWEEP_YAML.format(
        name=name, optimizers=optimizers, tokens=tokens, scope=scope, start=start, max_extensions=max_extensions))


def launch_cli(sweep: str, sweep_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "optlaw", "sweep", f"sweep={sweep}", f"sweep_dir={sweep_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def train_commands_in_log(sweep_dir: Path, run_id: str) -> int:
    return (sweep_dir / "logs" / f"{run_id}.log").read_text().count(" -m optlaw train ")


def starts(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.startswith("start ")]


@pytest.fixture
def user_configs(tmp_path, monkeypatch):
    root = tmp_path / "user_configs"
    monkeypatch.setenv("OPTLAW_EXTRA_CONFIGS", str(root))
    return root


@pytest.mark.slow
def test_a_bracket_16x_too_low_extends_and_ends_interior(tmp_path):
    # Muon on llama/100k at 8192 tokens: the best lr_mult is about 8 (measured, configs/sweep/tune_smoke.yaml);
    # starting at 0.5 the first grid (0.25, 0.5, 1) has its best at the upper edge. Trained in this process
    # (run_manifest_point): the same runs a launcher would start, without a process per point.
    definition = {"name": "far", "task": "llm", "models": ["llama/100k"], "optimizers": ["muon"], "seeds": [0],
                  "tokens": [8192], "fixed": FIXED,
                  "tuning": {"enabled": True, "hyperparameters": [{"key": "optimizer.lr_mult", "start": 0.5,
                                                                    "max_extensions": 6}]}}
    sweep_dir = tmp_path / "far"
    planner = TuningPlanner(definition, sweep_dir, naming=POINT_NAMING)
    outcome = run_rounds(sweep_dir, plan_and_write(planner), launch=lambda ids: (
        {run_id: run_manifest_point(str(sweep_dir), run_id) for run_id in ids}, []), blocking=True)
    cell = outcome.plan.state.cells[0]
    walk = cell.coordinates[0]
    assert outcome.complete and cell.resolved and not cell.at_edge, cell.note
    assert cell.setting["optimizer.lr_mult"] >= 16 * 0.5          # the optimum sat 16x (or more) above the start
    assert max(walk.values.values()) > cell.setting["optimizer.lr_mult"]  # and a worse value beyond it was tried
    assert cell.round >= 4 and walk.verdict.bracket[0] < walk.verdict.best < walk.verdict.bracket[1]
    # Each point trained once, and its record says which round of which cell planned it.
    assert sorted(outcome.launched) == sorted(p.run_id for p in outcome.plan.points)
    winner = records.read_record(sweep_dir / "runs" / cell.winner_run_ids[0])
    assert winner.status == "done" and winner.tuning["source"] == "tuned"
    assert winner.tuning["cell"] == "llama/100k muon tokens=8192" and winner.tuning["round"] >= 4
    assert winner.tuning["values"] == {"optimizer.lr_mult": cell.setting["optimizer.lr_mult"]}


@pytest.mark.slow
def test_a_launcher_killed_mid_round_resumes_without_retraining_a_finished_point(user_configs, tmp_path):
    write_tuning_sweep(user_configs, "tune_kill", tokens="16384")
    sweep_dir = tmp_path / "sw"
    env = dict(os.environ)
    first = launch_cli("tune_kill", sweep_dir, env)
    lines = []
    for line in first.stdout:  # kill the launcher as soon as the first point of round 1 has finished
        lines.append(line)
        if line.startswith("end "):
            first.send_signal(signal.SIGTERM)
            break
    lines += first.stdout.readlines()
    assert first.wait(timeout=300) != 0, "".join(lines)
    finished_before = {p["run_id"] for p in read_manifest(sweep_dir)["points"]
                       if records.read_status(sweep_dir / p["run_dir"]) == "done"}
    assert finished_before and not read_tuning(sweep_dir).complete

    second = subprocess.run([sys.executable, "-m", "optlaw", "sweep", "sweep=tune_kill", f"sweep_dir={sweep_dir}"],
                            capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert not set(starts(second.stdout)) & finished_before
    state = read_tuning(sweep_dir)
    assert state.complete and state.cells[0].resolved
    for point in read_manifest(sweep_dir)["points"]:
        assert records.read_status(sweep_dir / point["run_dir"]) == "done"
        if point["run_id"] in finished_before:
            assert train_commands_in_log(sweep_dir, point["run_id"]) == 1
    # A point the kill interrupted mid-training resumed from its checkpoint rather than starting over.
    interrupted = [p["run_id"] for p in read_manifest(sweep_dir)["points"]
                   if p["run_id"] not in finished_before and (sweep_dir / "logs" / f"{p['run_id']}.log").exists()
                   and train_commands_in_log(sweep_dir, p["run_id"]) == 2]
    for run_id in interrupted:
        log = (sweep_dir / "logs" / f"{run_id}.log").read_text()
        assert "resuming from step" in log or "preempted" not in log


@pytest.mark.slow
def test_two_launchers_on_one_tuning_sweep_train_each_point_once(user_configs, tmp_path):
    write_tuning_sweep(user_configs, "tune_two", optimizers="[adamw, muon]")
    sweep_dir = tmp_path / "sw"
    env = dict(os.environ)
    launches = [launch_cli("tune_two", sweep_dir, env)]
    time.sleep(1.0)  # the second one starts while the first plans
    launches.append(launch_cli("tune_two", sweep_dir, env))
    outputs = [p.communicate(timeout=1200)[0] for p in launches]
    assert [p.returncode for p in launches] == [0, 0], outputs
    started = [run_id for out in outputs for run_id in starts(out)]
    points = read_manifest(sweep_dir)["points"]
    assert sorted(started) == sorted(p["run_id"] for p in points), outputs  # every point started once, by one of them
    assert all(starts(out) for out in outputs), "both launchers should have trained points"
    for point in points:
        assert records.read_status(sweep_dir / point["run_dir"]) == "done"
        assert train_commands_in_log(sweep_dir, point["run_id"]) == 1
    state = read_tuning(sweep_dir)
    assert state.complete and all(c.finished for c in state.cells)
    assert all("tuning: 2 cells" in out and "complete" in out for out in outputs)
