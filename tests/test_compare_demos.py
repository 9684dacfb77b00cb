"""scripts/research/compare_demos.py (README, reproducibility): two demo runs on different machine settings."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _demo(root: Path, threads: int, losses: dict[str, float], rho_d: tuple, winner: float) -> Path:
    for run_id, loss in losses.items():
        (root / "sweep" / "runs" / run_id).mkdir(parents=True)
        (root / "sweep" / "runs" / run_id / "run.json").write_text(json.dumps(
            {"run_id": run_id, "status": "done", "final_val_loss": loss, "optimizer": "muon",
             "machine": {"device": "cpu", "threads": threads},
             "choices": {"muon.ns_dtype": {"value": "float32"}}}))
    (root / "fit").mkdir()
    (root / "fit" / "fit.json").write_text(json.dumps({
        "reference": "adamw",
        "optimizers": {"adamw": {"rho_D": 1.0}, "muon": {"rho_D": rho_d[0], "rho_D_ci": list(rho_d[1:])}},
        "shared": {"alpha": 0.5, "beta": 0.7, "ci": {"alpha": [0.4, 0.6], "beta": [0.6, 0.8]}},
        "tuning_protocol": {"cells": [{"cell": "7k muon", "role": "tuned", "setting": {"lr_mult": winner}}]}}))
    return root


def test_two_demos_compared_by_machine_loss_winner_and_rho(tmp_path):
    a = _demo(tmp_path / "a", 1, {"r1": 2.0, "r2": 3.0, "only_a": 1.0}, (1.3, 1.0, 1.6), 2.0)
    b = _demo(tmp_path / "b", 2, {"r1": 2.0, "r2": 3.1}, (1.7, 1.4, 2.0), 4.0)
    out = subprocess.run([sys.executable, str(ROOT / "scripts/research/compare_demos.py"), str(a), str(b)],
                         capture_output=True, text=True, check=True).stdout
    out = " ".join(out.split())
    assert "threads: A 1 B 2" in out and "device" not in out  # only what differs
    assert "runs in both: 2 (A 3, B 2); bitwise equal final losses: 1" in out
    assert "max 0.1000 nats" in out
    assert "winner changed in 1: 7k muon" in out
    # B's rho_D 1.7 lies outside A's [1.0, 1.6]; A's 1.3 lies outside B's [1.4, 2.0].
    assert "muon rho_D 1.300 [1.00, 1.60] 1.700 [1.40, 2.00] NO NO" in out
