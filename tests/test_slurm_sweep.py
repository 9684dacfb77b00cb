"""Sweeps on a real single-node SLURM cluster (scripts/slurm_cluster.sh) with tiny CPU runs.

Where SLURM cannot start, these tests fail under CI=true (saying why) and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optlaw import records
from optlaw.errors import UserError
from optlaw.sweep import claims
from optlaw.entry.sweep_cmd import main_status, main_sweep
from optlaw.sweep.manifest import read_manifest

sys.path.insert(0, os.path.dirname(__file__))
from test_sweep_grid import write_sweep  # noqa: E402  (shared tiny sweep definition)
from test_sweep_worker import comparable, worker_pids  # noqa: E402  (records without timings; a log's worker pids)

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parent.parent
# Log and checkpoint every step, so the tests can interrupt a point mid-run (neither changes the run id).
EVERY_STEP = ["checkpoint.every_steps=1", "log.every_steps=1"]


def _cluster_problem() -> str | None:
    """None when a SLURM cluster accepts jobs, else why not (after trying to start one)."""
    def up() -> bool:
        try:
            ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return "is UP" in ping.stdout and any(s.startswith(("idle", "mix", "alloc", "comp")) for s in state.stdout.split())

    if up():
        return None
    script = REPO / "scripts" / "slurm_cluster.sh"
    start = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=900)
    if up():
        return None
    detail = " ".join((start.stderr or start.stdout or "no output").split())[-300:]
    return f"no usable SLURM cluster: `bash scripts/slurm_cluster.sh start` exited {start.returncode}: {detail}"


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem + " (CI must run the SLURM tests)")
        pytest.skip(problem)


@pytest.fixture
def user_configs(tmp_path, monkeypatch):
    root = tmp_path / "user_configs"
    write_sweep(root)                                        # 2 points of 2 and 3 steps
    write_sweep(root, name="longer", tokens="[6144, 5632]")  # 12 and 11 steps
    monkeypatch.setenv("OPTLAW_EXTRA_CONFIGS", str(root))    # sbatch exports it to the jobs
    return root


def queued(job_ids: list[str]) -> list[str]:
    """The jobs among ``job_ids`` SLURM still holds (pending, running, requeued)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 1.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def job_ids_of(sweep_dir: Path) -> dict[str, str]:
    ids = {}
    for point in read_manifest(sweep_dir)["points"]:
        claim = claims.read_claim(sweep_dir, point["run_id"])
        if claim and claim.get("slurm_job_id"):
            ids[point["run_id"]] = claim["slurm_job_id"]
    return ids


def release_requeued(job_id: str) -> None:
    """SLURM holds a requeued job back (BeginTime, ~2 min); make it eligible now to keep the test short."""
    def pending() -> bool:
        return any(line.endswith("PENDING") for line in queued([job_id]))

    wait_until(pending, 120, f"job {job_id} to be pending again after the requeue", poll_s=0.5)
    # Starting it again while the node still tears the old instance down gets it killed
    # ("Job credential revoked"): wait until no slurmstepd of that job is left.
    raw_id = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%A"], capture_output=True, text=True).stdout.strip()
    wait_until(lambda: subprocess.run(["pgrep", "-f", rf"slurmstepd: \[{raw_id}\."], capture_output=True).returncode != 0,
               60, f"the old instance of job {job_id} to be cleaned up", poll_s=0.5)
    time.sleep(2)
    # No check: if SLURM already started it, there is nothing to release; otherwise the
    # hold simply runs out and the waits below are long enough for that.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)


def steps_logged(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line).get("step", 0) for line in lines if line.strip()]
    return max(steps, default=0)


@pytest.mark.slow
def test_slurm_sweep_finishes_every_point_and_relaunch_submits_nothing(slurm_cluster, user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    started = time.time()
    assert main_sweep(["sweep=tiny", "launcher=slurm_cpu", f"sweep_dir={sweep_dir}"]) == 0
    assert time.time() - started < 60  # returns once the array is queued
    assert "queued array" in capsys.readouterr().out
    jobs = job_ids_of(sweep_dir)
    assert len(jobs) == 2
    wait_until(lambda: not queued(list(jobs.values())), 300, "the array to leave the queue")
    for point in read_manifest(sweep_dir)["points"]:
        assert records.read_record(sweep_dir / point["run_dir"]).status == "done"
    main_status([str(sweep_dir)])
    assert "2 points: 2 done" in capsys.readouterr().out
    assert main_sweep(["sweep=tiny", "launcher=slurm_cpu", f"sweep_dir={sweep_dir}"]) == 0
    out = capsys.readouterr().out
    assert "nothing to run" in out and "queued array" not in out


@pytest.mark.slow
def test_requeue_and_preemption_resume_exactly_and_scancel_leaves_a_resumable_point(slurm_cluster, user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=longer", f"sweep_dir={sweep_dir}", "--dry-run", *EVERY_STEP])
    requeued_point, cancelled_point = read_manifest(sweep_dir)["points"]
    # Reference: the same point trained without interruption, outside SLURM.
    reference_dir = tmp_path / "reference"
    reference = subprocess.Popen(
        [sys.executable, "-m", "optlaw", "train", *requeued_point["overrides"], f"run_dir={reference_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    assert main_sweep(["sweep=longer", "launcher=slurm_cpu", f"sweep_dir={sweep_dir}", *EVERY_STEP]) == 0
    capsys.readouterr()
    jobs = job_ids_of(sweep_dir)
    requeued_dir = sweep_dir / requeued_point["run_dir"]
    cancelled_dir = sweep_dir / cancelled_point["run_dir"]

    # Interrupt both points right after their first logged step: on an idle machine a
    # step takes well under a second, so anything slower could miss the run.
    wait_until(lambda: steps_logged(requeued_dir) >= 1, 240, "the first point to train a step", poll_s=0.1)
    subprocess.run(["scontrol", "requeue", jobs[requeued_point["run_id"]]], check=True)
    wait_until(lambda: steps_logged(cancelled_dir) >= 1, 240, "the second point to train a step", poll_s=0.1)
    subprocess.run(["scancel", jobs[cancelled_point["run_id"]]], check=True)
    release_requeued(jobs[requeued_point["run_id"]])

    wait_until(lambda: not queued([jobs[cancelled_point["run_id"]]]), 120, "the cancelled job to leave the queue")
    cancelled_status = records.read_record(cancelled_dir).status
    assert cancelled_status in ("running", "failed")  # resumable or failed, never done
    main_status([str(sweep_dir)])
    assert cancelled_point["run_id"] in capsys.readouterr().out

    # Then the signal SLURM sends before a time limit or on preemption (USR1 here): the
    # trainer checkpoints, submitit requeues the job, and it resumes again.
    log_path = sweep_dir / "logs" / f"{requeued_point['run_id']}.log"
    resumed = wait_until(lambda: re.search(r"resuming from step (\d+)", log_path.read_text()), 240,
                         "the requeued job to resume", poll_s=0.1)
    resume_step = int(resumed.group(1))
    assert resume_step < 12
    wait_until(lambda: steps_logged(requeued_dir) > resume_step, 240, "the resumed point to train a step", poll_s=0.1)
    subprocess.run(["scancel", "--signal=USR1", jobs[requeued_point["run_id"]]], check=True)
    release_requeued(jobs[requeued_point["run_id"]])

    wait_until(lambda: not queued([jobs[requeued_point["run_id"]]]), 300, "the requeued job to finish")
    record = records.read_record(requeued_dir)
    assert record.status == "done"
    log = log_path.read_text()
    assert "preempted by SIGUSR1" in log and log.count("resuming from step") == 2  # resumed after each stop
    assert reference.wait(timeout=300) == 0
    assert record.final_val_loss == records.read_record(reference_dir).final_val_loss

    # The next launch picks the cancelled point up (and only it), and it finishes.
    assert main_sweep(["sweep=longer", "launcher=slurm_cpu", f"sweep_dir={sweep_dir}", *EVERY_STEP]) == 0
    out = capsys.readouterr().out
    assert "to run now: 1 points" in out and "queued array" in out
    new_job = job_ids_of(sweep_dir)[cancelled_point["run_id"]]
    assert new_job != jobs[cancelled_point["run_id"]]
    wait_until(lambda: not queued([new_job]), 300, "the relaunched point to finish")
    assert records.read_record(cancelled_dir).status == "done"
    assert "resuming from step" in (sweep_dir / "logs" / f"{cancelled_point['run_id']}.log").read_text()


def test_options_the_cluster_rejects_show_sbatchs_message(slurm_cluster, user_configs, tmp_path):
    sweep_dir = tmp_path / "sw"
    with pytest.raises(UserError, match=r"sbatch rejected the job array: .*(?i:partition)"):
        main_sweep(["sweep=tiny", "launcher=slurm_cpu", "launcher.partition=no_such_partition", f"sweep_dir={sweep_dir}"])
    # Nothing stays claimed, so a corrected launch can take every point.
    assert not list((sweep_dir / "claims").glob("*.json"))


@pytest.mark.slow
def test_sbatch_template_runs_the_manifest_points(slurm_cluster, user_configs, tmp_path, capsys):
    # The dry run prints the plan with the exact submission parameters and #SBATCH lines, and
    # fills the template from the launcher config: no hard-coded CPUs or time, logs in the sweep dir.
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=tiny", "launcher=slurm_cpu", f"sweep_dir={sweep_dir}", "--dry-run"])
    out = capsys.readouterr().out
    assert "slurm array 1/1: 2 jobs; partition=(default) account=- qos=- nodes=1 gpus_per_node=0 cpus_per_task=1 " \
           "mem=(default) time=00:05:00 array=0-1%2" in out
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --cpus-per-task=1", "#SBATCH --time=5", "#SBATCH --signal=USR1@30",
                 f"#SBATCH --output={sweep_dir.resolve()}/slurm_logs/"):
        assert line in out
    script = sweep_dir.resolve() / "slurm" / "array-1.sbatch"
    assert f"sbatch {script}" in out
    text = script.read_text()
    assert "#SBATCH --cpus-per-task=1" in text and "#SBATCH --time=00:05:00" in text and "#SBATCH --array=0-1%2" in text
    assert f"#SBATCH --output={sweep_dir.resolve()}/slurm_logs/%x-%A_%a.out" in text
    assert not list((sweep_dir / "claims").glob("*.json"))  # a dry run claims nothing
    env = dict(os.environ, OPTLAW_PYTHON=sys.executable)
    submitted = subprocess.run(["sbatch", "--parsable", f"--chdir={tmp_path}", str(script)],
                               capture_output=True, text=True, env=env, check=True)
    array_id = submitted.stdout.strip().split(";")[0]
    wait_until(lambda: not queued([array_id]), 300, "the sbatch array to finish")
    for point in read_manifest(sweep_dir)["points"]:
        assert records.read_record(sweep_dir / point["run_dir"]).status == "done"
    assert list((sweep_dir / "slurm_logs").glob("*.out"))
    main_status([str(sweep_dir)])
    assert "2 points: 2 done" in capsys.readouterr().out


@pytest.mark.slow
def test_a_two_round_tune_on_slurm_queues_each_round_from_the_records(slurm_cluster, user_configs, tmp_path, capsys):
    # per_size with two budgets: round 1 tunes the longer budget (3 points, no extension allowed, so it ends
    # there); round 2 trains the winner at the shorter budget. Without --follow a launch queues the round
    # it can plan and returns; with --follow it waits for each round and queues the next.
    from test_sweep_tuning_runs import write_tuning_sweep

    write_tuning_sweep(user_configs, "tune_slurm", tokens="4096, 8192", scope="per_size", start=4.0, max_extensions=0)
    sweep_dir = tmp_path / "sw"
    assert main_sweep(["sweep=tune_slurm", "launcher=slurm_cpu", f"sweep_dir={sweep_dir}"]) == 0
    out = capsys.readouterr().out
    assert out.count("queued array") == 1 and "stopped: queued this round" in out
    round_one = job_ids_of(sweep_dir)
    assert len(round_one) == 3
    wait_until(lambda: not queued(list(round_one.values())), 300, "round 1 to leave the queue")

    assert main_sweep(["sweep=tune_slurm", "launcher=slurm_cpu", f"sweep_dir={sweep_dir}", "--follow"]) == 0
    out = capsys.readouterr().out
    assert out.count("queued array") == 1  # round 2 only: round 1 is finished
    from optlaw.sweep.tuning_replay import read_tuning

    state = read_tuning(sweep_dir)
    tuned, reused = state.cell("llama/100k adamw tokens=8192"), state.cell("llama/100k adamw tokens=4096")
    assert state.complete and tuned.finished and reused.status == "done" and reused.round == tuned.round + 1 == 2
    points = read_manifest(sweep_dir)["points"]
    assert len(points) == 4
    for point in points:
        record = records.read_record(sweep_dir / point["run_dir"])
        assert record.status == "done" and record.tuning["source"] == "tuned"
        assert (sweep_dir / "logs" / f"{point['run_id']}.log").read_text().count(" -m optlaw train ") == 1
    reused_record = records.read_record(sweep_dir / "runs" / reused.winner_run_ids[0])
    assert reused_record.tuning["reused_from"] == tuned.spec.label
    assert reused_record.tuning["values"] == tuned.setting
    main_status([str(sweep_dir)])
    status = capsys.readouterr().out
    assert "tuning: 2 cells" in status and "complete" in status


@pytest.mark.slow
def test_packed_job_runs_its_points_in_one_worker_with_the_records_of_one_job_per_point(
        slurm_cluster, user_configs, tmp_path, capsys):
    packed, single = tmp_path / "packed", tmp_path / "single"
    assert main_sweep(["sweep=tiny", "launcher=slurm_cpu", "launcher.pack_minutes=60", f"sweep_dir={packed}"]) == 0
    assert "1 jobs (2 points packed)" in capsys.readouterr().out
    assert main_sweep(["sweep=tiny", "launcher=slurm_cpu", f"sweep_dir={single}"]) == 0
    capsys.readouterr()
    packed_jobs, single_jobs = job_ids_of(packed), job_ids_of(single)
    assert len(set(packed_jobs.values())) == 1 and len(set(single_jobs.values())) == 2
    wait_until(lambda: not queued(list(packed_jobs.values()) + list(single_jobs.values())), 600, "both sweeps to finish")
    points = read_manifest(packed)["points"]
    pids = set()
    for point in points:
        a, b = comparable(packed / point["run_dir"]), comparable(single / point["run_dir"])
        assert a["status"] == "done" and a["final_val_loss"] == b["final_val_loss"] and a == b
        pids |= worker_pids(packed / "logs" / f"{point['run_id']}.log")
    assert len(pids) == 1  # one worker process ran the whole pack
    assert not list((packed / "claims").glob("*.json"))


@pytest.mark.slow
def test_a_requeued_packed_job_resumes_the_rest_of_its_pack(slurm_cluster, user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=longer", f"sweep_dir={sweep_dir}", "--dry-run", *EVERY_STEP])
    first, second = read_manifest(sweep_dir)["points"]
    references = {}
    for point in (first, second):
        references[point["run_id"]] = tmp_path / f"ref-{point['run_id']}"
    reference = subprocess.Popen(
        [sys.executable, "-m", "optlaw", "train", *first["overrides"], f"run_dir={references[first['run_id']]}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    assert main_sweep(["sweep=longer", "launcher=slurm_cpu", "launcher.pack_minutes=60", f"sweep_dir={sweep_dir}",
                       *EVERY_STEP]) == 0
    capsys.readouterr()
    jobs = job_ids_of(sweep_dir)
    (job,) = set(jobs.values())
    first_dir = sweep_dir / first["run_dir"]
    wait_until(lambda: steps_logged(first_dir) >= 1, 240, "the pack's first point to train a step", poll_s=0.1)
    subprocess.run(["scontrol", "requeue", job], check=True)
    release_requeued(job)
    wait_until(lambda: not queued([job]), 600, "the requeued pack to finish")
    for point in (first, second):
        assert records.read_record(sweep_dir / point["run_dir"]).status == "done"
    log = (sweep_dir / "logs" / f"{first['run_id']}.log").read_text()
    assert "preempted by SIGTERM" in log and "resuming from step" in log
    assert reference.wait(timeout=300) == 0
    assert records.read_record(first_dir).final_val_loss == records.read_record(references[first["run_id"]]).final_val_loss
    assert not list((sweep_dir / "claims").glob("*.json"))


@pytest.mark.slow
def test_multinode_command_trains_a_point_under_srun_with_a_torchrun_rendezvous(slurm_cluster, user_configs, tmp_path):
    # The single-node cluster allows one node: the generated srun + torchrun command (c10d rendezvous
    # on the first allocated node, its name from scontrol) runs there with 2 CPU ranks (gloo).
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"])
    point = read_manifest(sweep_dir)["points"][0]
    runner = tmp_path / "node.py"
    runner.write_text(
        "import subprocess, sys\n"
        "from optlaw.sweep.manifest import read_manifest, point_by_id\n"
        "from optlaw.sweep.slurm import multinode_command\n"
        f"manifest = read_manifest({str(sweep_dir)!r})\n"
        f"argv = multinode_command({str(sweep_dir)!r}, point_by_id(manifest, {point['run_id']!r}), manifest, gpus=2, nodes=1)\n"
        "argv.append('batch.micro_batch_size=2')  # 2 ranks x 2 x 128 tokens = the global batch of 512\n"
        "print(' '.join(argv), flush=True)\n"
        "sys.exit(subprocess.run(argv).returncode)\n"
    )
    done = subprocess.run(["srun", "-N1", "-n1", "--cpus-per-task=2", "--time=10", f"--chdir={tmp_path}",
                           sys.executable, str(runner)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "--rdzv_backend=c10d" in done.stdout and "--nnodes=1" in done.stdout
    record = records.read_record(sweep_dir / point["run_dir"])
    assert record.status == "done" and record.budget["world_size"] == 2
