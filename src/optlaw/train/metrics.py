"""Per-step metrics: JSON lines on disk, a progress line on the terminal, MFU on CUDA."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from optlaw.jsonio import dumps, write_atomic

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self.enabled = enabled
        self._fh = None
        if not enabled:
            return
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self._fh = open(self.path, "a", buffering=1)

    def _truncate_after(self, step: int) -> None:
        # A killed run may have logged steps past its last checkpoint; those are
        # redone after resuming, so drop them to keep one line per step.
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except (json.JSONDecodeError, AttributeError):
                continue  # a torn last line from the kill
        text = "".join(k + "\n" for k in kept)
        # Atomic: a kill during the rewrite leaves the old file, never a half-truncated one.
        write_atomic(self.path, lambda fh: fh.write(text))

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is not None:
            try:
                self._fh.write(dumps(row) + "\n")
            except OSError as exc:  # a plain file write's error names no file: name it
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def peak_bf16_flops(device: torch.device, peaks_tflops: dict[str, float]) -> float | None:
    """Dense bf16 peak of this device from the config table (matched by substring of its name), or None."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    # Longest key first so "H100 PCIe" wins over "H100".
    for key in sorted(peaks_tflops, key=len, reverse=True):
        if key.lower() in name.lower():
            return float(peaks_tflops[key]) * 1e12
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float | None) -> float | None:
    if not peak_flops:
        return None
    return tokens_per_s * flops_per_token / peak_flops


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def format_tokens(tokens: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if tokens >= scale:
            return f"{tokens / scale:.1f}{unit}"
    return str(int(tokens))


def progress_line(row: dict[str, Any], total_steps: int, eta_s: float) -> str:
    val = f" | val {row['val_loss']:.4f}" if row.get("val_loss") is not None else ""
    return (
        f"step {row['step']}/{total_steps} | {format_tokens(row['tokens'])} tok | loss {row['train_loss']:.4f}{val}"
        f" | lr x{row['lr_factor']:.3f} | {row['tokens_per_s']:.0f} tok/s | eta {format_duration(eta_s)}"
    )


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
