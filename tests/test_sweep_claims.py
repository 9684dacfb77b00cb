"""Claims: one owner per run id across processes; a dead owner's claim is taken over."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

from optlaw.sweep import claims


def _claim_all(sweep_dir: str, run_ids: list[str], queue, all_claimed) -> None:
    won = [r for r in run_ids if claims.try_claim(sweep_dir, r) is not None]
    queue.put(won)
    # Stay alive until every racer is done: a finished racer's claims would be stale
    # (dead owner) and rightly taken over by a racer that started late.
    all_claimed.wait(timeout=60)


def test_racing_processes_each_point_claimed_once(tmp_path):
    run_ids = [f"p{i}" for i in range(40)]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    all_claimed = ctx.Barrier(4)
    procs = [ctx.Process(target=_claim_all, args=(str(tmp_path), run_ids, queue, all_claimed)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    won = [r for result in results for r in result]
    assert sorted(won) == sorted(run_ids)  # every point once, none twice


def test_live_claim_blocks_and_release_frees(tmp_path):
    assert claims.try_claim(tmp_path, "a") is not None
    assert claims.try_claim(tmp_path, "a") is None  # this process is alive
    claims.release_claim(tmp_path, "a")
    assert claims.try_claim(tmp_path, "a") is not None


def test_dead_owner_claim_is_stale(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    owner = {"host": __import__("socket").gethostname(), "pid": child.pid, "pid_start": "1", "created": 0}
    path = claims.claim_path(tmp_path, "b")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(owner))
    assert claims.live_claim(tmp_path, "b") is None
    mine = claims.try_claim(tmp_path, "b")
    assert mine is not None and mine["pid"] != child.pid


def test_reused_pid_is_not_mistaken_for_the_owner(tmp_path):
    import os

    owner = {"host": __import__("socket").gethostname(), "pid": os.getpid(), "pid_start": "not-my-start", "created": 0}
    path = claims.claim_path(tmp_path, "c")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(owner))
    assert claims.live_claim(tmp_path, "c") is None


def test_owner_on_another_host_is_assumed_alive(tmp_path):
    path = claims.claim_path(tmp_path, "d")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "some-other-node", "pid": 1, "created": 0}))
    assert claims.try_claim(tmp_path, "d") is None  # cannot check it, so never run twice
