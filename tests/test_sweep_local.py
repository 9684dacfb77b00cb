"""The local launcher with real `optlaw train` runs of a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from optlaw import records
from optlaw.entry.sweep_cmd import main_status, main_sweep
from optlaw.sweep.manifest import read_manifest

sys.path.insert(0, os.path.dirname(__file__))
from test_sweep_grid import write_sweep  # noqa: E402  (shared tiny sweep definition)


@pytest.fixture
def user_configs(tmp_path, monkeypatch):
    root = tmp_path / "user_configs"
    write_sweep(root)
    monkeypatch.setenv("OPTLAW_EXTRA_CONFIGS", str(root))
    return root


def _set_status(sweep_dir, point, status):
    record = records.read_record(sweep_dir / point["run_dir"])
    record.status = records.Status(status)
    records.write_record(sweep_dir / point["run_dir"], record)


@pytest.mark.slow
def test_local_sweep_runs_every_point_then_skips_finished(user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    assert main_sweep(["sweep=tiny", "launcher=local", "launcher.max_parallel=2", f"sweep_dir={sweep_dir}"]) == 0
    out = capsys.readouterr().out
    assert "2 points: 2 done" in out
    points = read_manifest(sweep_dir)["points"]
    for point in points:
        record = records.read_record(sweep_dir / point["run_dir"])
        assert record.status == "done" and record.run_id == point["run_id"]
        assert record.tokens_trained == point["tokens"]
    assert not list((sweep_dir / "claims").glob("*.json"))  # released at the end

    # Relaunch after completion runs nothing.
    assert main_sweep(["sweep=tiny", "launcher=local", f"sweep_dir={sweep_dir}"]) == 0
    out = capsys.readouterr().out
    assert "nothing to run" in out and "start " not in out

    # Diverged points are results: kept unless --retry-diverged.
    _set_status(sweep_dir, points[0], "diverged")
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"])
    assert "nothing to run" in capsys.readouterr().out
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run", "--retry-diverged"])
    assert "to run now: 1 points" in capsys.readouterr().out
    _set_status(sweep_dir, points[0], "done")

    # A failed point is run again (the trainer resumes it from its last checkpoint).
    _set_status(sweep_dir, points[1], "failed")
    main_status([str(sweep_dir)])
    assert "1 failed" in capsys.readouterr().out
    assert main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}"]) == 0
    out = capsys.readouterr().out
    assert f"start {points[1]['run_id']}" in out and f"start {points[0]['run_id']}" not in out
    assert records.read_record(sweep_dir / points[1]["run_dir"]).status == "done"


@pytest.mark.slow
def test_two_launches_at_once_never_run_a_point_twice(user_configs, tmp_path):
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"])
    cmd = [sys.executable, "-m", "optlaw", "sweep", "sweep=tiny", "launcher.max_parallel=2", f"sweep_dir={sweep_dir}"]
    launches = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in launches]
    starts = [line for out in outputs for line in out.splitlines() if line.startswith("start ")]
    points = read_manifest(sweep_dir)["points"]
    assert sorted(starts) == sorted(f"start {p['run_id']}" for p in points), outputs
    for point in points:
        assert records.read_record(sweep_dir / point["run_dir"]).status == "done"
        log = (sweep_dir / "logs" / f"{point['run_id']}.log").read_text()
        assert log.count("# ") >= 1 and log.count(" -m optlaw train ") == 1  # one training process per point
    assert json.loads((sweep_dir / "manifest.json").read_text())["sweep"] == "tiny"


@pytest.mark.slow
def test_budget_branching_trains_fewer_tokens_and_marks_branches(tmp_path, monkeypatch, capsys):
    root = tmp_path / "user_configs"
    write_sweep(root, name="plain_wsd", tokens="[1536, 3072]")
    text = (root / "sweep" / "plain_wsd.yaml").read_text()
    wsd = "  schedule.name: wsd\n  schedule.decay_fraction: 0.25\n  schedule.warmup_tokens: 512\n"
    (root / "sweep" / "plain_wsd.yaml").write_text(text.replace("fixed:\n", "fixed:\n" + wsd))
    branched = text.replace("name: plain_wsd", "name: branched").replace(
        "branching: {enabled: false, decay_fraction: 0.2, warmup_tokens: null}",
        "branching: {enabled: true, decay_fraction: 0.25, warmup_tokens: 512}",
    )
    (root / "sweep" / "branched.yaml").write_text(branched)
    monkeypatch.setenv("OPTLAW_EXTRA_CONFIGS", str(root))

    main_sweep(["sweep=plain_wsd", f"sweep_dir={tmp_path / 'plain'}", "--dry-run"])
    assert main_sweep(["sweep=branched", "launcher.max_parallel=2", f"sweep_dir={tmp_path / 'br'}"]) == 0
    plain_points = read_manifest(tmp_path / "plain")["points"]
    short, trunk = read_manifest(tmp_path / "br")["points"]
    # Same points as the plain WSD grid: a branch is the same computation, so the same run id.
    assert [p["run_id"] for p in plain_points] == [short["run_id"], trunk["run_id"]]
    assert trunk.get("branch_trunk") and short["branch_from"] == {"run_id": trunk["run_id"], "tokens": 1024}
    short_record = records.read_record(tmp_path / "br" / short["run_dir"])
    trunk_record = records.read_record(tmp_path / "br" / trunk["run_dir"])
    assert short_record.status == trunk_record.status == "done"
    assert short_record.branch["parent_run_id"] == trunk["run_id"] and trunk_record.branch is None
    trained = trunk_record.tokens_trained + short_record.tokens_trained - short_record.branch["from_tokens"]
    assert trained == 3072 + 1536 - 1024 < 3072 + 1536


def test_proxy_task_sweep_runs_through_the_same_launcher(tmp_path, capsys):
    sweep_dir = tmp_path / "quad"
    assert main_sweep(["sweep=quadratic_smoke", "launcher.max_parallel=2", f"sweep_dir={sweep_dir}"]) == 0
    assert "8 points: 8 done" in capsys.readouterr().out
    for point in read_manifest(sweep_dir)["points"]:
        record = records.read_record(sweep_dir / point["run_dir"])
        assert record.run_id == point["run_id"] and record.task == "quadratic"


def test_eta_is_weighted_by_planned_flops(monkeypatch):
    from optlaw.sweep import local

    clock = iter([100.0, 130.0])
    monkeypatch.setattr(local.time, "perf_counter", lambda: next(clock))
    eta = local._EtaClock({"a": {"flops": 1e12}, "b": {"flops": 3e12}}, ["a", "b"])
    assert eta.text() == ""  # nothing finished: no estimate yet
    eta.finished("a")
    # 30 s for a quarter of the FLOPs: three times that is left.
    assert eta.text() == " | elapsed 0m30s, ~1m30s left"


def test_a_launch_with_more_work_takes_each_point_once_and_a_failing_point_stops_no_other(tmp_path):
    # The streaming launch of a tuning sweep: run_local asks `more` for points whenever one ends. Every
    # point handed over runs once (one start line each), a point that fails does not stop the others, and
    # a point `more` hands over again (already run) is not run twice.
    import io

    from optlaw.sweep.local import run_local

    sweep_dir = tmp_path / "quad"
    assert main_sweep(["sweep=quadratic_smoke", f"sweep_dir={sweep_dir}", "--dry-run"]) == 0
    manifest = read_manifest(sweep_dir)
    ids = [p["run_id"] for p in manifest["points"]]
    broken = ids[3]
    manifest["points"][3]["overrides"].append("no_such_key=1")  # `optlaw train` refuses it: exit 2, no record
    (sweep_dir / "manifest.json").write_text(json.dumps(manifest))
    handed = [ids[2:4], ids[4:6], [ids[0], *ids[6:]], []]
    calls = []

    def more():
        calls.append(1)
        return handed[min(len(calls), len(handed)) - 1]

    out = io.StringIO()
    results = run_local(sweep_dir, ids[:2], max_parallel=2, out=out, more=more)
    starts = [line.split()[1] for line in out.getvalue().splitlines() if line.startswith("start ")]
    assert sorted(starts) == sorted(ids), out.getvalue()  # each once, ids[0] not again
    assert set(results) == set(ids) and results[broken] != "done"
    assert all(results[r] == "done" for r in ids if r != broken)
    assert len(calls) >= len(ids) - 1  # asked after every end


def test_a_free_slot_takes_tuned_points_first_then_the_most_flops():
    from optlaw.sweep.local import launch_priority

    points = {"predicted_big": {"flops": 9e12, "tuning": {"source": "predicted"}},
              "tuned_small": {"flops": 1e10, "tuning": {"source": "tuned"}},
              "tuned_big": {"flops": 5e11, "tuning": {"source": "tuned"}},
              "plain_mid": {"flops": 1e12}}
    order = sorted(points, key=lambda r: launch_priority(points[r]))
    assert order == ["tuned_big", "tuned_small", "predicted_big", "plain_mid"]
