"""scripts/gpu_check.py and scripts/gpu_wheels.sh, as far as a machine without a GPU can test them.

The --cpu-smoke run trains through every check at toy sizes: the same code the GPU run
uses, on CPU. What only a GPU can show (bf16 on tensor cores, fused AdamW, compile, MFU)
is in docs/gpu.md as pending until scripts/gpu_check.py has run on one.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_smoke_runs_every_check_and_writes_json_and_markdown(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--cpu-smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    checks = report["checks"]
    assert set(checks) == {"install", "environment", "precision", "optimizers", "throughput", "checkpoint", "sweep_fit"}
    assert report["passed"] and all(c["passed"] for c in checks.values())
    precision = checks["precision"]
    assert precision["steps"] >= 100 and 0 < precision["max_moving_average_gap_nats"] <= precision["tolerance_nats"]
    assert set(checks["optimizers"]["optimizers"]) == {"adamw", "muon", "shampoo", "soap"}
    for row in checks["optimizers"]["optimizers"].values():
        assert row["steps"] >= 20 and row["finite"] and row["step_cost_ratio"] > 0
    assert len(checks["throughput"]["runs"]) == 4 and all(r["tokens_per_s"] > 0 for r in checks["throughput"]["runs"])
    assert checks["checkpoint"]["tensors_compared"] > 20 and checks["checkpoint"]["mismatches"] == []
    assert checks["sweep_fit"]["runs"] == 2 and Path(checks["sweep_fit"]["fit_json"]).exists()
    table = (out / "gpu_check.md").read_text()
    assert "| precision | pass |" in table and "| soap | 20 |" in table and "| llama/250k | yes |" in table


def test_bitwise_comparison_finds_a_one_ulp_difference():
    gpu_check = _gpu_check()
    a = {"model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"step": torch.tensor(4.0)}}, "param_groups": [{"lr": 0.1}]}}
    b = {"model": {"w": torch.nextafter(torch.ones(3), torch.full((3,), 2.0))}, "optimizer": a["optimizer"]}
    assert gpu_check._tensor_mismatches(a, a) == []
    assert gpu_check._tensor_mismatches(a, b) == [".model.w"]
    c = {"model": a["model"], "optimizer": {"state": a["optimizer"]["state"], "param_groups": [{"lr": 0.2}]}}
    assert gpu_check._tensor_mismatches(a, c) == [".optimizer.param_groups[0].lr"]


def test_a_failed_check_is_reported_and_the_run_fails(tmp_path, monkeypatch):
    gpu_check = _gpu_check()

    def broken(sizes, work, log):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setitem(gpu_check.CHECKS, "environment", broken)
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path / "c"), "--only", "environment"]) == 1
    report = json.loads((tmp_path / "c" / "gpu_check.json").read_text())
    assert report["passed"] is False
    assert report["checks"]["environment"]["error"] == "RuntimeError: CUDA error: an illegal memory access"
    assert "| environment | FAIL |" in (tmp_path / "c" / "gpu_check.md").read_text()


def test_a_check_over_its_limit_is_ended(tmp_path, monkeypatch):
    gpu_check = _gpu_check()

    def slow(sizes, work, log):
        import time
        time.sleep(30)

    monkeypatch.setitem(gpu_check.CHECKS, "environment", slow)
    monkeypatch.setitem(gpu_check.CPU_SMOKE.limits_s, "environment", 1)
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path / "c"), "--only", "environment"]) == 1
    result = json.loads((tmp_path / "c" / "gpu_check.json").read_text())["checks"]["environment"]
    assert "over its 1 s limit" in result["error"] and result["seconds"] < 5


@pytest.mark.parametrize("argv,message", [
    (["--wheels", "/nonexistent/wheels"], "is not a folder"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, argv, message):
    assert _gpu_check().main(["--cpu-smoke", "--out", str(tmp_path / "c"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_non_empty_out_folder_is_refused(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "gpu_check.json").write_text("{}")
    assert _gpu_check().main(["--cpu-smoke", "--out", str(tmp_path / "c")]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_gpu_wheels_dry_run_asks_pip_for_python_312_manylinux_wheels_of_the_missing_packages():
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_wheels.sh"), "--dry-run", "/tmp/wheels"],
                          capture_output=True, text=True, check=True)
    commands = done.stdout.strip().splitlines()
    assert len(commands) == 2
    for cmd in commands:
        for flag in ("-m pip download", "--dest /tmp/wheels", "--only-binary=:all:", "--python-version 3.12",
                     "--platform manylinux2014_x86_64"):
            assert flag in cmd
    wanted = set(_gpu_check().MISSING_ON_GPU_BOX)
    named = {word for cmd in commands for word in cmd.split() if word in wanted}
    assert named == wanted  # the script and the check agree on what the GPU box lacks
    assert "--no-deps pytorch-optimizer" in commands[1]  # it would pull a torch build otherwise


def _write_wheel(folder: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel (PEP 427), so the offline install is tested without a registry."""
    dist = f"{name}-{version}"
    files = {
        f"{name}.py": module_source,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def test_install_from_a_local_wheel_folder_into_a_temporary_target(tmp_path, monkeypatch):
    gpu_check = _gpu_check()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels, "optlaw_probe_pkg", "1.0", "ANSWER = 42\n")
    target = tmp_path / "site"
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    cmd = gpu_check.install_wheels(wheels, target, ["optlaw_probe_pkg"])
    assert cmd[cmd.index("--find-links") + 1] == str(wheels) and "--no-index" in cmd
    gpu_check.put_on_path(target)
    import optlaw_probe_pkg

    assert optlaw_probe_pkg.ANSWER == 42 and Path(optlaw_probe_pkg.__file__).parent == target
    # A package missing from the folder fails the install (no registry is asked: --no-index).
    with pytest.raises(subprocess.CalledProcessError):
        gpu_check.install_wheels(wheels, tmp_path / "other", ["optlaw_absent_pkg"])
    sys.modules.pop("optlaw_probe_pkg", None)
