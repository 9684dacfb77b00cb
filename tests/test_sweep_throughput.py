"""The local launcher's throughput for the plan's hours: measured on this machine unless configured."""

from __future__ import annotations

import json

import pytest
import torch

from optlaw import machine
from optlaw.config import compose
from optlaw.entry.sweep_cmd import launcher_throughput
from optlaw.models import model_stats
from optlaw.sweep import throughput


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTLAW_CACHE_DIR", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_null_throughput_is_measured_here_once_and_a_number_is_used_as_given(monkeypatch):
    assert compose(None, ["+launcher=local"]).launcher.throughput_flops_per_s is None  # the default measures
    flops_per_s, source = launcher_throughput({"name": "local", "throughput_flops_per_s": None})
    assert source.startswith("measured on this machine") and "llama/1m" in source
    entry = json.loads(next(machine.probe_dir().glob("train-throughput-*.json")).read_text())
    result = entry["result"]
    assert entry["key"]["threads"] == 1 and result["flops_per_s"] == flops_per_s
    # FLOP/s = the model's training FLOPs per token x tokens per step / seconds per step.
    per_token = model_stats(compose("train", [f"model={throughput.PROBE_MODEL}"]).model).flops_per_token
    assert flops_per_s == pytest.approx(per_token * result["tokens_per_step"] / result["step_s"], rel=1e-3)
    monkeypatch.setattr(throughput, "measure_train_throughput", lambda: pytest.fail("measured again"))
    assert launcher_throughput({"name": "local", "throughput_flops_per_s": None})[0] == flops_per_s
    assert launcher_throughput({"name": "slurm", "throughput_flops_per_s": 1.25e14}) == (1.25e14, "launcher.throughput_flops_per_s")
