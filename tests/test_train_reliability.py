"""A run directory belongs to one run: run-id binding, the lock, damaged records and
checkpoints, file modes, Ctrl-C (issue 14). Real tiny runs throughout."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optlaw import jsonio, records
from optlaw.config import compose
from optlaw.entry import cli
from optlaw.entry.points import run_point
from optlaw.errors import UserError
from optlaw.train import checkpoint as ckpt
from optlaw.train.lock import LOCK_NAME, RunLock
from optlaw.train.metrics import read_metrics

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_llm import TINY_LLM, one_torch_thread  # noqa: E402,F401  (autouse fixture)

TINY = TINY_LLM + ["batch.global_tokens=256", "step_cost.repeats=0", "budget.tokens=2048", "checkpoint.every_steps=2"]


def train(run_dir: Path, *overrides: str) -> records.LLMRunRecord:
    return run_point(compose("train", TINY + [f"run_dir={run_dir}", *overrides]))


def cli_error(run_dir: Path, capsys, *overrides: str) -> str:
    """Run ``optlaw train`` in-process; assert exit 2 and one ``error:`` line; return it."""
    code = cli.main(["train", *TINY, f"run_dir={run_dir}", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# --- a run directory is bound to its run id ----------------------------------------------------------

def _interrupted(run_dir: Path, *overrides: str, at_step: int = 4) -> None:
    """A run stopped before step ``at_step + 1`` as a kill leaves it: checkpoint at ``at_step``, record running."""
    from optlaw.train import loop

    real = loop.TrainLoop.train_step

    def stop_at(self, step):
        if step == at_step:
            raise KeyboardInterrupt
        return real(self, step)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop.TrainLoop, "train_step", stop_at)
        with pytest.raises(KeyboardInterrupt):
            train(run_dir, *overrides)
    assert records.read_record(run_dir).status == records.RUNNING
    assert ckpt.step_path(run_dir, at_step).exists()


def test_resume_with_another_config_is_refused_naming_the_keys(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _interrupted(run_dir)
    err = cli_error(run_dir, capsys, "optimizer.lr_mult=2.0")
    assert "optimizer.lr_mult=1.0->2.0" in err and f"delete {run_dir}" in err and "another run_dir" in err
    assert records.read_record(run_dir).status == records.RUNNING  # nothing trained on, nothing rewritten
    # The record gone, the checkpoint alone still binds the directory.
    (run_dir / "run.json").unlink()
    err = cli_error(run_dir, capsys, "optimizer.lr_mult=2.0")
    assert "step_00000004.pt" in err and "optimizer.lr_mult=1.0->2.0" in err
    assert not (run_dir / "run.json").exists()
    # The same config resumes and finishes.
    assert train(run_dir).status == records.DONE


def test_already_done_of_another_run_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(run_dir).status == records.DONE
    err = cli_error(run_dir, capsys, "optimizer=muon")
    assert "optimizer.name=adamw->muon" in err and "belongs to run llama-1m-adamw" in err


def test_another_models_checkpoint_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(run_dir, "budget.tokens=512").status == records.DONE
    (run_dir / "run.json").unlink()
    err = cli_error(run_dir, capsys, "budget.tokens=512", "model.d_model=64", "model.head_dim=32")
    assert "model.d_model=32->64" in err
    # A checkpoint claiming this run's id but holding other tensors (hand-edited, copied): one line too.
    mine = compose("train", TINY + [f"run_dir={run_dir}", "budget.tokens=512", "model.d_model=64", "model.head_dim=32"])
    from optlaw.config import to_plain
    from optlaw.train.identity import run_id

    saved = ckpt.load(ckpt.step_path(run_dir, 2))
    saved["run_id"], saved["config"] = run_id(to_plain(mine)), ckpt.encode_config(to_plain(mine))
    ckpt.save_atomic(saved, ckpt.step_path(run_dir, 2))
    err = cli_error(run_dir, capsys, "budget.tokens=512", "model.d_model=64", "model.head_dim=32")
    assert "step_00000002.pt does not fit this model" in err and "size mismatch" in err


# --- damaged records -------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"\xff\xfe{not utf-8", b"[1, 2]", b'{"run_id": "x", "sta'])
def test_a_damaged_record_is_kept_aside_and_the_run_resumes(tmp_path, content, capsys):
    reference = train(tmp_path / "reference")
    run_dir = tmp_path / "run"
    _interrupted(run_dir)
    (run_dir / "run.json").write_bytes(content)
    finished = train(run_dir)
    out = capsys.readouterr().out
    assert "corrupt" in out and "resuming from step 4" in out
    kept = list(run_dir.glob("run.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert finished.status == records.DONE and finished.final_val_loss == reference.final_val_loss


# --- one trainer per run directory -----------------------------------------------------------------

def _holder(tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _write_lock(run_dir: Path, **owner) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps(owner))


def test_a_second_trainer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path, capsys):
    import socket

    from optlaw.train.lock import process_start_time

    run_dir = tmp_path / "run"
    holder = _holder(tmp_path)
    try:
        _write_lock(run_dir, host=socket.gethostname(), pid=holder.pid, pid_start=process_start_time(holder.pid))
        err = cli_error(run_dir, capsys)
        assert f"being trained by process {holder.pid}" in err and "another run_dir" in err
        assert not (run_dir / "run.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(run_dir).status == records.DONE  # the dead holder's lock is taken over
    assert not (run_dir / LOCK_NAME).exists()  # and released at the end


def test_the_lock_of_a_slurm_job_that_is_gone_is_taken_over(tmp_path, monkeypatch):
    # A stand-in squeue on PATH answers as SLURM does for a job that left the queue.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text("#!/bin/sh\nif [ \"$3\" = 4242 ]; then echo 'R'; exit 0; fi\n"
                      "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    run_dir = tmp_path / "run"
    _write_lock(run_dir, host="node-elsewhere", pid=1, slurm_job_id="4242")
    with pytest.raises(UserError, match="being trained by SLURM job 4242"):
        RunLock(run_dir).acquire()
    _write_lock(run_dir, host="node-elsewhere", pid=1, slurm_job_id="999")
    with RunLock(run_dir) as lock:
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid() == lock.owner["pid"]
    assert not (run_dir / LOCK_NAME).exists()
    # A requeued job finds its own earlier lock (SLURM lists the job: it is this one) and takes it over.
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    _write_lock(run_dir, host="node-elsewhere", pid=1, slurm_job_id="4242")
    with RunLock(run_dir) as lock:
        assert lock.owner["slurm_job_id"] == "4242"


# --- file modes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_umask_mode(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        assert jsonio.new_file_mode() == mode
        jsonio.write_json_atomic(tmp_path / "a.json", {"x": 1})
        ckpt.save_atomic({"w": torch.zeros(2)}, tmp_path / "c.pt")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
        assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == mode
    finally:
        os.umask(previous)


def test_a_run_writes_every_file_with_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        run_dir = tmp_path / "run"
        train(run_dir, "budget.tokens=512")
    finally:
        os.umask(previous)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "config.yaml", "routing.json", "metrics.jsonl", "step_00000002.pt"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}


def test_an_os_error_inside_torch_save_names_the_path_and_the_os_words(tmp_path, monkeypatch):
    import errno

    real_write = jsonio._ErrorKeepingStream.write
    calls = {"n": 0}

    def full_after_a_while(self, data):
        calls["n"] += 1
        if calls["n"] > 2:
            self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise self.error
        return real_write(self, data)

    monkeypatch.setattr(jsonio._ErrorKeepingStream, "write", full_after_a_while)
    target = tmp_path / "c.pt"
    with pytest.raises(OSError) as info:
        ckpt.save_atomic({"w": torch.zeros(10000)}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert "No space left on device" in str(info.value)
    assert not list(tmp_path.iterdir())  # no temp file left behind


# --- Ctrl-C ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_checkpoints_leaves_the_run_running_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    long = ["budget.tokens=61440", "checkpoint.every_steps=50", "eval.fractions=[0.5]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "optlaw", "train", *TINY, f"run_dir={run_dir}", *long]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not (run_dir / "metrics.jsonl").exists() or not read_metrics(run_dir):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 130, output
    assert "interrupted by Ctrl-C" in output and "Traceback" not in output
    record = records.read_record(run_dir)
    assert record.status == records.RUNNING and "Ctrl-C" in record.reason
    saved = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert saved and int(saved[-1].stem.split("_")[1]) == record.steps_done < record.steps
    assert not (run_dir / LOCK_NAME).exists()
    finished = train(run_dir, *long)
    assert finished.status == records.DONE


# --- every user error is one line, exit 2 -----------------------------------------------------------

@pytest.mark.parametrize("override, match", [
    ("optimizer.groups.hidden_matrix.lr=abc", "optimizer.groups.hidden_matrix.lr='abc' is not valid"),
    ("optimizer.lr_mult=fast", "optimizer.lr_mult='fast' is not valid"),
    ("budget.tokens=lots", "budget.tokens='lots' is not valid"),
])
def test_a_string_for_a_number_is_one_line(tmp_path, capsys, override, match):
    err = cli_error(tmp_path / "run", capsys, override)
    assert match in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, match", [
    (b'{"text": "one"}\n{bad json\n', "line 2 is not JSON"),
    (b'{"text": "one"}\n\n{"text": "\xff\xfe"}\n', "line 3 is not UTF-8 text"),
    (b'{"text": "one"}\n[1, 2]\n', "line 2 is a JSON list, not an object"),
    (b'"just a string"\n', "line 1 is a JSON str, not an object"),
])
def test_malformed_jsonl_is_one_line_naming_the_line(tmp_path, capsys, content, match):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(content)
    err = cli_error(tmp_path / "run", capsys, "data=text", f"data.files=[{corpus}]", f"data.cache_dir={tmp_path / 'cache'}")
    assert f"{corpus} {match}" in err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_sweep_lists_a_damaged_record_as_corrupt_and_reruns_the_point(tmp_path, monkeypatch, capsys):
    from optlaw.entry.sweep_cmd import main_status, main_sweep
    from optlaw.fit import load_runs
    from optlaw.sweep.manifest import read_manifest
    from test_sweep_grid import write_sweep

    write_sweep(tmp_path / "user_configs")
    monkeypatch.setenv("OPTLAW_EXTRA_CONFIGS", str(tmp_path / "user_configs"))
    sweep_dir = tmp_path / "sw"
    assert main_sweep(["sweep=tiny", "launcher=local", f"sweep_dir={sweep_dir}"]) == 0
    point = read_manifest(sweep_dir)["points"][0]
    run_dir = sweep_dir / point["run_dir"]
    before = records.read_record(run_dir)
    (run_dir / "run.json").write_bytes(b"\xff\xfe not a record")
    capsys.readouterr()

    assert main_status([str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{point['run_id']:<44} corrupt" in out and str(run_dir / "run.json") in out and "1 corrupt" in out
    table = load_runs(sweep_dir)
    assert [(r["status"], r["run_id"]) for r in table.excluded] == [("corrupt", run_dir.name)]

    assert main_sweep(["sweep=tiny", "launcher=local", f"sweep_dir={sweep_dir}"]) == 0
    out = capsys.readouterr().out
    assert f"corrupt: {run_dir / 'run.json'}" in out and "2 points: 2 done" in out
    after = records.read_record(run_dir)
    assert after.status == records.DONE and after.final_val_loss == before.final_val_loss  # resumed from its checkpoint
    kept = list(run_dir.glob("run.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"\xff\xfe not a record"


def test_micro_batch_size_keeps_the_run_id_and_the_loss_up_to_rounding(tmp_path):
    """README: micro_batch_size is not in the run id; it changes only the last digits of the loss."""
    base = [o for o in TINY if not o.startswith("batch.micro_batch_size")]
    four = run_point(compose("train", base + ["batch.micro_batch_size=4", f"run_dir={tmp_path / 'a'}"]))
    two = run_point(compose("train", base + ["batch.micro_batch_size=2", f"run_dir={tmp_path / 'b'}"]))
    assert four.run_id == two.run_id
    assert two.final_val_loss == pytest.approx(four.final_val_loss, rel=1e-6)


def test_a_proxy_point_keeps_a_damaged_record_too(tmp_path):
    run_dir = tmp_path / "q"
    run_dir.mkdir()
    (run_dir / "run.json").write_bytes(b"[1, 2")
    code = cli.main(["train", "task=quadratic", "proxy_optimizer=kron", "N=64", "steps=32", "s=1.2", "feature_dim=4096",
                     "irreducible_loss=0.05", f"run_dir={run_dir}"])
    assert code == 0 and records.read_record(run_dir).status == records.DONE
    assert [p.read_bytes() for p in run_dir.glob("run.json.corrupt-*")] == [b"[1, 2"]
