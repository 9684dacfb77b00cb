"""What this machine is, and choices measured on it, cached per machine and torch build.

Some defaults depend on the hardware more than on anything a config can say (Muon's
Newton-Schulz dtype: bf16 matmul is ~17x slower than fp32 on CPUs that emulate it
and 2-4x faster on CPUs with avx512_bf16/AMX). optlaw decides those by a short
measurement on the machine at hand (``measured``) and keeps the answer in a JSON file
under ``$OPTLAW_CACHE_DIR/probes`` (default ``~/.cache/optlaw/probes``), one file per
question and machine, so later runs on the same machine reuse it.

The cache key names everything that changes the answer: CPU model and the instruction
set flags that matter, the torch build and its CPU capability, oneDNN/ATen ISA limits
set in the environment, the thread count (or the CUDA device), and the question's own
workload. A file is written atomically (temp file + rename), so concurrent writers
(ranks, points of a sweep) never leave a torn file: the last one wins, and each holds a
complete measurement.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from optlaw.records import write_json_atomic

# Instruction-set flags that decide which matmul kernels run (x86: avx2/avx512 fp32, avx512_bf16 and
# AMX for bf16; arm: bf16, sve).
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "asimd", "sve", "bf16")
# Environment variables that limit the kernels torch may use (ISA caps), so they change timings.
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
PROBE_DIR = "probes"


@dataclass(frozen=True)
class CpuInfo:
    model_name: str
    vendor: str
    family: str
    model: str
    flags: tuple[str, ...]  # the RELEVANT_FLAGS this CPU has
    logical_cpus: int
    usable_cpus: int  # this process's affinity (a container or taskset may allow fewer)

    def label(self) -> str:
        """E.g. ``Intel(R) Xeon(R) Processor (GenuineIntel family 6 model 207)``."""
        ident = " ".join(p for p in (self.vendor, f"family {self.family}" if self.family else "",
                                     f"model {self.model}" if self.model else "") if p)
        return f"{self.model_name} ({ident})" if ident else self.model_name


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor describes them all
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:  # not Linux: fall back to what platform knows
        pass
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return CpuInfo(
        model_name=fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU",
        vendor=fields.get("vendor_id", ""),
        family=fields.get("cpu family", ""),
        model=fields.get("model", ""),
        flags=tuple(f for f in RELEVANT_FLAGS if f in present),
        logical_cpus=os.cpu_count() or 1,
        usable_cpus=usable,
    )


def isa_limits() -> dict[str, str]:
    """ISA caps set in the environment (e.g. ONEDNN_MAX_CPU_ISA=AVX2 makes bf16 matmul emulated)."""
    return {name: os.environ[name] for name in ISA_ENV if os.environ.get(name)}


def describe(device: torch.device | str = "cpu") -> str:
    """One line naming the machine, for benchmark output and notes: CPU, flags, torch build, threads, load."""
    cpu = cpu_info()
    line = (f"CPU {cpu.label()}, {cpu.logical_cpus} logical CPUs ({cpu.usable_cpus} usable), "
            f"flags {' '.join(cpu.flags) or 'none of ' + '/'.join(RELEVANT_FLAGS[:4])}; "
            f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
            f"{torch.get_num_threads()} threads")
    limits = isa_limits()
    if limits:
        line += "; " + " ".join(f"{k}={v}" for k, v in limits.items())
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    try:
        line += "; load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return line


def machine_key(device: torch.device) -> dict[str, Any]:
    """What identifies this machine and torch build for a measurement on ``device``."""
    key: dict[str, Any] = {"torch": torch.__version__, "device": device.type}
    if device.type == "cuda":
        key |= {"gpu": torch.cuda.get_device_name(device), "capability": list(torch.cuda.get_device_capability(device)),
                "cuda": torch.version.cuda}
        return key
    cpu = cpu_info()
    return key | {
        "cpu": cpu.model_name, "vendor": cpu.vendor, "family": cpu.family, "model": cpu.model, "flags": list(cpu.flags),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "isa_limits": isa_limits(),
        "threads": torch.get_num_threads(),
    }


def probe_dir() -> Path:
    return Path(os.environ.get("OPTLAW_CACHE_DIR") or Path.home() / ".cache" / "optlaw").expanduser() / PROBE_DIR


def cache_path(name: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return probe_dir() / f"{name}-{digest}.json"


def measured(name: str, key: dict[str, Any], measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``'s result for ``key`` on this machine: from the cache, else measured now and cached.

    Returns the result plus ``measured_at`` (UTC, when it was measured), ``cache`` (``hit`` or
    ``measured``) and ``cache_file``. A cache that cannot be read or written is not an error:
    the measurement is then simply repeated by the next run.
    """
    path = cache_path(name, key)
    try:
        entry = json.loads(path.read_text())
        if entry.get("key") == key:  # guards against a hash collision and a hand-edited file
            return {**entry["result"], "measured_at": entry["measured_at"], "cache": "hit", "cache_file": str(path)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    result = measure()
    entry = {"key": key, "result": result, "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "machine": describe()}
    try:
        write_json_atomic(path, entry)
    except OSError:
        pass
    return {**result, "measured_at": entry["measured_at"], "cache": "measured", "cache_file": str(path)}
