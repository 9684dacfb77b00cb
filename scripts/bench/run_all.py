"""Run every optlaw benchmark side by side and collect their outputs, per machine.

Usage: .venv/bin/python scripts/bench/run_all.py [--out docs/benchmarks.md] [--only NAME ...]

Each bench_*.py prints its own ratios, measured side by side within one run
(these machines are noisy, so absolute times across runs mean little), and the
machine it ran on. Results differ by machine (bf16 matmul is native on some CPUs
and emulated on others), so this runner writes one section per machine into the
output file: a rerun on the same machine (CPU model, flags that matter, torch
build) replaces that machine's section and leaves the others' as they were.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_train.py", "bench_optim.py", "bench_fit.py", "bench_branching.py"]
# Extra arguments per script (none: bench_fit times Hoffmann's whole 4,500-start grid,
# about 2.5 minutes on this 2-core machine).
# bench_tuning: the smoke sweep only (the larger one, 18 cells, took 14 minutes on its own on a loaded
# 2-core machine, 2026-11-30: run it by hand with --sweeps larger).
DEFAULT_ARGS: dict[str, list[str]] = {"bench_tuning.py": ["--sweeps", "tune_smoke"]}


MACHINE = ("<!-- run_all machine: {key} -->", "<!-- /run_all machine -->")
SCRIPT = ("<!-- run_all script: {name} -->", "<!-- /run_all script -->")


def machine_key() -> str:
    """What makes two runs' figures comparable: CPU model and flags, ISA limits, GPU, torch build."""
    import torch

    from optlaw.machine import cpu_info, isa_limits

    cpu = cpu_info()
    parts = [cpu.label(), " ".join(cpu.flags), f"torch {torch.__version__}"]
    parts += [f"{k}={v}" for k, v in isa_limits().items()]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return " | ".join(parts)


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with the block between ``begin`` and ``end`` set to ``body`` (appended when absent)."""
    if begin in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        return f"{head}{begin}\n{body.strip()}\n{end}{tail}"
    return f"{text.rstrip()}\n\n{begin}\n{body.strip()}\n{end}\n".lstrip("\n")


def record(text: str, key: str, script: str, block: str) -> str:
    """The benchmarks file ``text`` with ``script``'s output on machine ``key`` replaced by ``block``;
    other scripts on this machine and other machines' sections stay as they are."""
    begin, end = MACHINE[0].format(key=key), MACHINE[1]
    section = text.partition(begin)[2].partition(end)[0] if begin in text else f"## {key}"
    section = replace_block(section, SCRIPT[0].format(name=script), SCRIPT[1], block)
    return replace_block(text or "# optlaw benchmarks", begin, end, section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE.parent.parent / "docs" / "benchmarks.md"))
    parser.add_argument("--only", nargs="*", help="run only these scripts (e.g. bench_fit)")
    args = parser.parse_args()
    scripts = [s for s in ORDER if (HERE / s).exists()]
    scripts += sorted(p.name for p in HERE.glob("bench_*.py") if p.name not in ORDER)
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only}
        scripts = [s for s in scripts if s.removesuffix(".py") in wanted]
    from optlaw.machine import describe

    key, out = machine_key(), Path(args.out)
    failures = 0
    for script in scripts:
        print(f"=== {script}", flush=True)
        started, load = dt.datetime.now(dt.timezone.utc), describe()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script), *DEFAULT_ARGS.get(script, [])],
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        output = (proc.stdout + ("\n" + proc.stderr if proc.returncode else "")).strip()
        print(output, flush=True)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        failures += proc.returncode != 0
        block = "\n".join([
            f"### {script} ({status}, {elapsed:.0f} s)", "",
            f"Measured {started:%Y-%m-%d %H:%M} UTC by `scripts/bench/run_all.py`, Python {platform.python_version()}; "
            "every ratio is measured side by side in one run.", "",
            f"At the start: {load}.", "", "```", output, "```"])
        out.write_text(record(out.read_text() if out.exists() else "", key, script, block))  # after each script: a crash keeps the rest
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
