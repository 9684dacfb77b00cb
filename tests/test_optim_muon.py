"""Muon: the batched step keeps torch.optim.Muon's semantics; its Newton-Schulz dtype is measured, cached and pinned."""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import threading
import warnings

import pytest
import torch
from torch.optim._muon import _adjust_lr

from optlaw import machine
from optlaw.config import compose, to_plain
from optlaw.optim import build_optimizer
from optlaw.optim.muon import (NS_DTYPES, PROBE_NAME, OptlawMuon, choose_ns_dtype, newton_schulz_orthogonalize,
                               orthogonalize_batched, probe_key, probe_workload)

COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# Shapes that share batches (16x8 with 8x16, two 12x12) and one alone (5x7).
SHAPES = [(16, 8), (16, 8), (8, 16), (12, 12), (12, 12), (5, 7), (16, 8)]


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTLAW_CACHE_DIR", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _matrices(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Norms a thousand-fold apart: a batch normalised as a whole, not per matrix, would be far off.
    return [torch.randn(shape, generator=generator) * 10.0 ** (i % 4 - 1) for i, shape in enumerate(SHAPES)]


# --- the batched iteration ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_batched_orthogonalisation_equals_the_per_matrix_one(dtype, tolerance):
    updates = _matrices()
    batched = orthogonalize_batched(updates, COEFFICIENTS, 5, 1e-7, dtype)
    for update, ours in zip(updates, batched):
        alone = newton_schulz_orthogonalize(update, COEFFICIENTS, 5, 1e-7, dtype)
        assert ours.shape == update.shape and ours.dtype == dtype
        torch.testing.assert_close(ours.float(), alone.float(), rtol=0, atol=tolerance)
        # ...and it is an orthogonalisation: singular values pulled into Muon's band around 1.
        singular = torch.linalg.svdvals(ours.float())
        assert singular.min() > 0.5 and singular.max() < 1.3, singular


def _step_both(nesterov: bool, adjust_lr_fn: str, reference_nesterov: bool | None = None, steps: int = 5):
    kwargs = dict(lr=0.02, weight_decay=0.1, momentum=0.95, adjust_lr_fn=adjust_lr_fn)
    start = _matrices(1)
    ours_params = [torch.nn.Parameter(w.clone()) for w in start]
    torch_params = [torch.nn.Parameter(w.clone()) for w in start]
    ours = OptlawMuon(ours_params, ns_dtype="bfloat16", nesterov=nesterov, **kwargs)
    reference = torch.optim.Muon(torch_params, nesterov=nesterov if reference_nesterov is None else reference_nesterov, **kwargs)
    generator = torch.Generator().manual_seed(2)
    for _ in range(steps):
        grads = [torch.randn(w.shape, generator=generator) for w in start]
        for params, opt in ((ours_params, ours), (torch_params, reference)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    return ours_params, torch_params


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw"])
def test_bf16_trajectory_matches_torch_muon(nesterov, adjust_lr_fn):
    ours, reference = _step_both(nesterov, adjust_lr_fn)
    # Batched bf16 may round differently from torch's per-matrix mm (on some CPUs it is bit-for-bit):
    # allow 0.01 per entry of each of the 5 orthogonalised updates, times the largest adjusted lr.
    largest_lr = max(_adjust_lr(0.02, adjust_lr_fn, torch.Size(shape)) for shape in SHAPES)
    atol = 5 * largest_lr * 0.01
    for index, (a, b) in enumerate(zip(ours, reference)):
        torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=f"parameter {index} {tuple(a.shape)}")
    # The 5x7 matrix is alone in its batch: it takes torch's exact op sequence.
    assert torch.equal(ours[5], reference[5])
    # The tolerance is far tighter than a real change of semantics (Nesterov on vs off).
    _, other = _step_both(nesterov, adjust_lr_fn, reference_nesterov=not nesterov)
    assert max((a - b).abs().max().item() for a, b in zip(ours, other)) > 5 * atol


# --- choosing the dtype ----------------------------------------------------------------------------

def test_auto_on_cpu_is_measured_once_then_read_from_the_cache(tmp_path):
    shapes = [torch.Size(s) for s in SHAPES]
    first = choose_ns_dtype("auto", shapes, torch.device("cpu"), COEFFICIENTS, 5, 1e-7)
    assert first["source"] == "probe" and first["cache"] == "measured" and first["value"] in NS_DTYPES
    times = first["times_ms"]
    assert set(times) == set(NS_DTYPES) and all(t > 0 for t in times.values())
    assert first["value"] == ("bfloat16" if times["bfloat16"] < 0.95 * times["float32"] else "float32")
    cached = json.loads((tmp_path / "cache" / "probes").joinpath(first["cache_file"].rsplit("/", 1)[1]).read_text())
    assert cached["key"]["threads"] == 1 and cached["key"]["flags"] == list(machine.cpu_info().flags)
    again = choose_ns_dtype("auto", shapes, torch.device("cpu"), COEFFICIENTS, 5, 1e-7)
    assert again["cache"] == "hit" and (again["value"], again["times_ms"]) == (first["value"], times)


def test_a_cached_answer_is_used_as_stored_and_its_key_covers_the_machine(monkeypatch):
    shapes = [torch.Size(s) for s in SHAPES]
    work = probe_workload(shapes, 5)
    key = probe_key(work, COEFFICIENTS, 5, torch.device("cpu"))
    stored = {"value": "float32", "times_ms": {"float32": 1.0, "bfloat16": 99.0}}
    path = machine.cache_path(PROBE_NAME, key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": key, "result": stored, "measured_at": "2026-01-01T00:00:00+00:00"}))
    choice = choose_ns_dtype("auto", shapes, torch.device("cpu"), COEFFICIENTS, 5, 1e-7)
    assert (choice["value"], choice["times_ms"], choice["cache"]) == ("float32", stored["times_ms"], "hit")
    # An ISA cap in the environment is another machine as far as timings go: a new key, a new measurement.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert probe_key(work, COEFFICIENTS, 5, torch.device("cpu")) != key


def test_config_values_are_used_as_given_and_an_unknown_one_is_refused():
    shapes = [torch.Size(s) for s in SHAPES]
    for value in NS_DTYPES:
        assert choose_ns_dtype(value, shapes, torch.device("cpu"), COEFFICIENTS, 5, 1e-7) == {"value": value, "source": "config"}
    with pytest.raises(ValueError, match="ns_dtype='fast'"):
        choose_ns_dtype("fast", shapes, torch.device("cpu"), COEFFICIENTS, 5, 1e-7)


def test_probe_stays_short_for_large_models():
    big = [torch.Size((4096, 4096))] * 128 + [torch.Size((4096, 11008))] * 96
    work = probe_workload(big, 5)
    assert all(count == 2 for count, _, _ in work)
    flops = sum(c * 5 * (4.0 * m * m * n + 2.0 * m**3) for c, m, n in work)
    assert flops <= 1.0e9
    assert [round(n / m, 1) for _, m, n in work] == [1.0, 2.7]  # aspect ratios kept


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONEDNN_MAX_CPU_ISA caps x86 ISAs")
def test_probe_picks_fp32_where_bf16_matmul_is_emulated(tmp_path):
    # ONEDNN_MAX_CPU_ISA=AVX2 takes away avx512_bf16/AMX: bf16 matmul is then emulated, as on the
    # CPUs where torch's bf16 Newton-Schulz measured ~17x slower than fp32.
    code = ("import torch, json; torch.set_num_threads(1); from optlaw.optim.muon import choose_ns_dtype; "
            "print(json.dumps(choose_ns_dtype('auto', [torch.Size((160, 160))] * 4 + [torch.Size((416, 160))] * 3, "
            "torch.device('cpu'), (3.4445, -4.7750, 2.0315), 5, 1e-7)))")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OPTLAW_CACHE_DIR": str(tmp_path / "emulated")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    choice = json.loads(out.stdout.strip().splitlines()[-1])
    assert choice["value"] == "float32", choice
    assert choice["times_ms"]["bfloat16"] > 2 * choice["times_ms"]["float32"], choice


def test_concurrent_writers_leave_one_complete_cache_file():
    key = {"question": "test", "machine": "this one"}
    results = []

    def write(index: int) -> None:
        results.append(machine.measured("concurrent", key, lambda: {"value": index, "payload": "x" * 100_000}))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    files = list(machine.probe_dir().iterdir())
    assert [f.name for f in files] == [machine.cache_path("concurrent", key).name]  # no temp file left behind
    entry = json.loads(files[0].read_text())
    assert entry["key"] == key and entry["result"]["value"] in range(8) and len(entry["result"]["payload"]) == 100_000
    assert machine.measured("concurrent", key, lambda: pytest.fail("measured again"))["value"] == entry["result"]["value"]


# --- pinned for the life of a run ------------------------------------------------------------------

def _save_and_load(optimizer: torch.optim.Optimizer) -> dict:
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_resume_keeps_the_dtype_the_run_started_with():
    start = _matrices(3)
    first_params = [torch.nn.Parameter(w.clone()) for w in start]
    first = OptlawMuon(first_params, ns_dtype="bfloat16", lr=0.02)
    generator = torch.Generator().manual_seed(4)
    grads = [[torch.randn(w.shape, generator=generator) for w in start] for _ in range(4)]
    for step_grads in grads[:2]:
        for p, g in zip(first_params, step_grads):
            p.grad = g.clone()
        first.step()
    saved = _save_and_load(first)

    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in first_params]
    resumed = OptlawMuon(resumed_params, ns_dtype="float32", lr=0.02)  # this machine/config would say fp32
    with pytest.warns(UserWarning, match="stays in bfloat16"):
        resumed.load_state_dict(saved)
    assert resumed.resolved_hyperparameters() == {"ns_dtype": "bfloat16"}
    assert resumed.choices()["ns_dtype"]["source"] == "config"  # as chosen when the run started
    for step_grads in grads[2:]:
        for params, opt in ((first_params, first), (resumed_params, resumed)):
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(first_params, resumed_params):
        assert torch.equal(a, b)


def test_a_checkpoint_from_before_pinning_resumes_with_the_rule_of_its_time():
    params = [torch.nn.Parameter(w.clone()) for w in _matrices()]
    old = _save_and_load(OptlawMuon(params, ns_dtype="bfloat16", lr=0.02))
    for group in old["param_groups"]:  # what optlaw wrote before the dtype was pinned
        del group["ns_dtype"], group["ns_dtype_choice"]
    resumed = OptlawMuon(params, ns_dtype="auto", lr=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warns only where this machine's probe picks bf16
        resumed.load_state_dict(old)
    assert resumed.resolved_hyperparameters() == {"ns_dtype": "float32"}  # auto meant fp32 on CPU then
    assert resumed.choices()["ns_dtype"]["source"] == "checkpoint"
    given = OptlawMuon(params, ns_dtype="bfloat16", lr=0.02)  # a dtype the config named was used as named
    given.load_state_dict(old)
    assert given.resolved_hyperparameters() == {"ns_dtype": "bfloat16"}


def _tiny_muon_bundle():
    from optlaw.models import build_model
    model_cfg = {"family": "llama", "size": "tiny", "n_layers": 2, "d_model": 32, "n_heads": 2, "ffn_hidden": 64,
                 "vocab_size": 64, "seq_len": 16}
    return build_optimizer(build_model(model_cfg), compose("train", ["optimizer=muon"]).optimizer, model_cfg)


def test_the_bundle_reports_the_dtype_in_use_and_how_it_was_chosen():
    bundle = _tiny_muon_bundle()
    choice = bundle.choices()["muon.ns_dtype"]
    assert choice["source"] == "probe"
    assert bundle.resolved["hyperparameters"]["muon"]["ns_dtype"] == choice["value"]  # not "auto"
    # DDP: every rank adopts rank 0's choices, and what the bundle reports follows.
    other = "float32" if choice["value"] == "bfloat16" else "bfloat16"
    bundle.adopt_choices({"muon.ns_dtype": {"value": other, "source": "probe", "times_ms": {}}})
    assert bundle.resolved["hyperparameters"]["muon"]["ns_dtype"] == other
    assert {g["ns_dtype"] for g in bundle.optimizers["muon"].param_groups} == {other}


def test_run_record_holds_the_dtype_and_the_run_id_holds_only_the_config(tmp_path):
    from optlaw.entry.points import run_id, run_point
    from optlaw.records import read_record
    sys.path.insert(0, os.path.dirname(__file__))
    from _tiny_llm import TINY_LLM

    overrides = TINY_LLM + ["optimizer=muon", "batch.global_tokens=256", "budget.tokens=1024", "step_cost.repeats=1", f"run_dir={tmp_path / 'run'}"]
    cfg = compose("train", overrides)
    expected_id = run_id(to_plain(cfg))
    run_point(cfg)
    record = read_record(tmp_path / "run")  # as written to run.json and read back, typed
    assert record.run_id == expected_id  # the id was known before anything was measured
    used = record.hyperparameters["hyperparameters"]["muon"]["ns_dtype"]
    assert used in NS_DTYPES and record.choices["muon.ns_dtype"]["value"] == used
    assert record.choices["muon.ns_dtype"]["source"] == "probe" and record.config["optimizer"]["muon"]["ns_dtype"] == "auto"
    assert set(record.choices["muon.ns_dtype"]["times_ms"]) == set(NS_DTYPES)
    # A dtype given in the config is part of the run's identity; auto is one identity whatever the machine picks.
    ids = {run_id(to_plain(compose("train", overrides + [f"optimizer.muon.ns_dtype={v}"]))) for v in ("auto", *NS_DTYPES)}
    assert len(ids) == 3


def _rank_builds_with_its_own_cache(rank: int, cache_root: str, port: int, out: str) -> None:
    # Each rank's cache says the other dtype: what two machines (or two noisy probes) could answer.
    import torch.distributed as dist

    from optlaw.train.distributed import DistInfo, from_main

    os.environ["OPTLAW_CACHE_DIR"] = f"{cache_root}/rank{rank}"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        bundle = _tiny_muon_bundle()
        mine = bundle.choices()["muon.ns_dtype"]["value"]
        bundle.adopt_choices(from_main(bundle.choices(), DistInfo(rank=rank, local_rank=rank, world_size=2,
                                                                   device=torch.device("cpu"))))
        used = {g["ns_dtype"] for g in bundle.optimizers["muon"].param_groups}
        with open(f"{out}/rank{rank}.json", "w") as fh:
            json.dump({"mine": mine, "used": sorted(used), "resolved": bundle.resolved["hyperparameters"]["muon"]["ns_dtype"]}, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_use_rank_zeros_dtype_when_their_probes_disagree(tmp_path):
    import socket

    import torch.multiprocessing as mp

    bundle = _tiny_muon_bundle()  # the shapes and key this machine's ranks will look up
    muon = bundle.optimizers["muon"]
    group = muon.param_groups[0]
    shapes = [p.shape for p in group["params"]]
    work = probe_workload(shapes, group["ns_steps"])
    key = probe_key(work, tuple(group["ns_coefficients"]), group["ns_steps"], torch.device("cpu"))
    for rank, value in ((0, "bfloat16"), (1, "float32")):
        os.environ["OPTLAW_CACHE_DIR"] = str(tmp_path / f"rank{rank}")
        path = machine.cache_path(PROBE_NAME, key)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"key": key, "result": {"value": value, "times_ms": {}}, "measured_at": "2026-01-01"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank_builds_with_its_own_cache, args=(str(tmp_path), port, str(tmp_path)), nprocs=2,
                       start_method="spawn", join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["mine"] for r in ranks] == ["bfloat16", "float32"]  # the caches did disagree
    assert all(r["used"] == ["bfloat16"] and r["resolved"] == "bfloat16" for r in ranks)


def test_the_fit_never_pools_runs_that_used_different_dtypes(tmp_path):
    # Two seeds of one cell, both configured ns_dtype=auto (one run id rule), trained on machines whose
    # probes chose differently: the records' hyperparameters carry the dtype in use, so the fit
    # keeps them apart as two settings of the cell instead of averaging them as one.
    from optlaw import records
    from optlaw.fit.table import load_runs

    for seed, dtype, loss in ((0, "bfloat16", 3.10), (1, "float32", 3.05)):
        record = records.LLMRunRecord(
            run_id=f"llama-1m-muon-1Mtok-s{seed}-x", task="llm", status=records.DONE, optimizer="muon",
            family="llama", size="1m", seed=seed, N=1e6, N_total=1.5e6, N_non_embedding=1e6, D=1e6,
            tokens_trained=1e6, final_val_loss=loss,
            hyperparameters={"hyperparameters": {"muon": {"ns_dtype": dtype}}},
            choices={"muon.ns_dtype": {"value": dtype, "source": "probe"}},
            config={"optimizer": {"name": "muon", "muon": {"ns_dtype": "auto"}}})
        run_dir = tmp_path / f"s{seed}"
        run_dir.mkdir()
        records.write_record(run_dir, record)
        assert records.read_record(run_dir).choices["muon.ns_dtype"]["value"] == dtype
    table = load_runs(tmp_path)
    assert table.loss.tolist() == [3.05]  # one setting kept, not the mean of the two
    (cell,) = table.tuning
    assert sorted(p["hyperparameters"]["hyperparameters"]["muon"]["ns_dtype"] for p in cell["points"]) == ["bfloat16", "float32"]


@pytest.mark.parametrize("nesterov", [True, False])
def test_buffers_kept_between_steps_give_the_same_steps_as_fresh_ones(monkeypatch, nesterov):
    # On CPU the batched step reuses its stack buffers; on a GPU it allocates them every step.
    # Reuse must carry nothing from one step into the next: both give bit-identical parameters.
    from optlaw.optim import muon

    def run(keep: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(muon, "_keeps_buffers", lambda device: keep)
        params = [torch.nn.Parameter(w.clone()) for w in _matrices(3)]
        opt = OptlawMuon(params, ns_dtype="bfloat16", lr=0.02, weight_decay=0.1, nesterov=nesterov)
        generator = torch.Generator().manual_seed(4)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            opt.step()
        assert bool(opt.__dict__.get("_plans")) == keep
        return params

    for kept, fresh in zip(run(True), run(False)):
        assert torch.equal(kept, fresh)
