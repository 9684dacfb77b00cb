"""Fault injection on the local launcher: SIGKILL it (and its children) at random moments, relaunch.

Every point must end done once, bitwise equal to an uninterrupted sweep, with no process
left training unsupervised, and the exit status of `optlaw sweep` must tell the truth.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optlaw import records
from optlaw.entry.sweep_cmd import SWEEP_HELD_ELSEWHERE, main_sweep
from optlaw.sweep import claims
from optlaw.sweep.manifest import read_manifest

sys.path.insert(0, os.path.dirname(__file__))
from test_sweep_local import user_configs  # noqa: E402,F401  (the fixture: the shared tiny sweep definition)

# 8 and 12 steps with a checkpoint after each, both at once: a kill lands mid-training more often than not.
LONGER = ("sweep.tokens=[4096,6144]", "checkpoint.every_steps=1", "launcher.max_parallel=2")


def _launch(sweep_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "optlaw", "sweep", "sweep=tiny", f"sweep_dir={sweep_dir}", *LONGER, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X"):
                parents[int(entry)] = int(fields[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found, frontier = set(), {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_parents())


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_sigkill_the_launcher_at_random_moments_then_relaunch(user_configs, tmp_path, capsys):
    reference = tmp_path / "ref"
    assert main_sweep(["sweep=tiny", f"sweep_dir={reference}", *LONGER]) == 0
    capsys.readouterr()
    rng = random.Random(14)
    sweep_dir = tmp_path / "sw"
    table = []
    for round_ in range(3):
        launcher = _launch(sweep_dir)
        # A random moment after the launcher has children: worker start-up, claiming, training,
        # evaluation or a checkpoint write.
        deadline = time.time() + 300
        while not _descendants(launcher.pid) and launcher.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 8.0))
        children = _descendants(launcher.pid)
        everyone = rng.random() < 0.5
        for pid in ([launcher.pid, *children] if everyone else [launcher.pid]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        launcher.communicate(timeout=60)
        # Children left alone got SIGTERM from the kernel: they checkpoint and leave.
        deadline = time.time() + 120
        while _alive(children) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(children), f"round {round_}: children {_alive(children)} outlived their launcher"
        table.append((round_, "launcher+children" if everyone else "launcher only", len(children)))
    final = _launch(sweep_dir)
    out = final.communicate(timeout=900)[0]
    assert final.returncode == 0, out
    assert not list((sweep_dir / "claims").glob("*.json"))
    for point in read_manifest(sweep_dir)["points"]:
        run_dir = sweep_dir / point["run_dir"]
        record = records.read_record(run_dir)
        assert record.status == "done" and record.tokens_trained == point["tokens"]
        assert record.final_val_loss == records.read_record(reference / point["run_dir"]).final_val_loss
        steps = [json.loads(line).get("step") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        steps = [s for s in steps if s is not None]
        assert steps == sorted(steps)  # one writer at a time: never two trainings of one point
    assert not _descendants(final.pid)
    assert sum(n for _, _, n in table) > 0  # the kills did hit children
    resumed = sum((sweep_dir / "logs" / f"{p['run_id']}.log").read_text().count("resuming from step")
                  for p in read_manifest(sweep_dir)["points"])
    print("\nround  killed             children alive at the kill")
    for round_, killed, n in table:
        print(f"{round_:>5}  {killed:<18} {n:>8}")
    print(f"faults injected: {len(table)}, runs resumed from a checkpoint: {resumed}, records lost: 0")


@pytest.mark.slow
def test_exit_status_is_zero_when_another_launch_finished_the_points(user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    assert main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}"]) == 0
    capsys.readouterr()
    # Everything done by an earlier launch: a relaunch has nothing to run and says 0.
    assert main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}"]) == 0


def test_points_held_by_a_live_launch_give_the_documented_exit_status(user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        for point in read_manifest(sweep_dir)["points"]:
            owner = {"host": os.uname().nodename, "pid": holder.pid,
                     "pid_start": claims.process_start_time(holder.pid), "created": time.time()}
            assert claims.try_claim(sweep_dir, point["run_id"], owner) is not None
        capsys.readouterr()
        assert main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}"]) == SWEEP_HELD_ELSEWHERE == 75
        out = capsys.readouterr().out
        assert "2 points are still being run by another live launch" in out and "exit status 75" in out
    finally:
        holder.kill()
        holder.wait()


def test_a_relaunch_removes_the_claims_of_a_dead_launcher(user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    point = read_manifest(sweep_dir)["points"][0]
    claims.try_claim(sweep_dir, point["run_id"], {"host": os.uname().nodename, "pid": dead.pid, "created": time.time()})
    assert claims.clean_stale(sweep_dir) == [point["run_id"]]
    assert not claims.claim_path(sweep_dir, point["run_id"]).exists()


def test_a_relaunch_stops_an_orphan_left_by_a_dead_launcher(tmp_path):
    # An orphan that ignores SIGTERM (no parent-death signal reached it): stopped by the relaunch.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
    try:
        time.sleep(0.5)
        host = os.uname().nodename
        claims.try_claim(tmp_path, "p", {"host": host, "pid": dead.pid, "created": time.time(),
                                        "child_pid": orphan.pid, "child_pid_start": claims.process_start_time(orphan.pid)})
        assert claims.live_claim(tmp_path, "p") is not None  # its child still runs: held
        assert claims.clean_stale(tmp_path, grace_s=1.0) == ["p"]
        assert orphan.wait(timeout=30) == -signal.SIGKILL
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
