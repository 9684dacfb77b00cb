"""Run every optlaw benchmark side by side and collect their outputs.

Usage: .venv/bin/python scripts/bench/run_all.py [--out docs/benchmarks.md] [--only NAME ...]

Each bench_*.py prints its own ratios, measured side by side within one run
(these machines are noisy, so absolute times across runs mean little). This
runner only runs them one after another and writes one Markdown file with the
machine they ran on, so the README's table can be refreshed from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_train.py", "bench_optim.py", "bench_fit.py", "bench_branching.py"]
# Extra arguments per script (none: bench_fit times Hoffmann's whole 4,500-start grid,
# about 2.5 minutes on this 2-core machine).
# bench_tuning: the smoke sweep only (the larger one, 18 cells, takes several times longer: run it by hand).
DEFAULT_ARGS: dict[str, list[str]] = {"bench_tuning.py": ["--sweeps", "tune_smoke"]}


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


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
    sections = [
        "# optlaw benchmarks",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on: {machine_description()}.",
        "Reproduce with `.venv/bin/python scripts/bench/run_all.py`. Every ratio is measured side by side in one run.",
        "",
    ]
    failures = 0
    for script in scripts:
        print(f"=== {script}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script), *DEFAULT_ARGS.get(script, [])],
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        output = (proc.stdout + ("\n" + proc.stderr if proc.returncode else "")).strip()
        print(output, flush=True)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        failures += proc.returncode != 0
        sections += [f"## {script} ({status}, {elapsed:.0f} s)", "", "```", output, "```", ""]
    Path(args.out).write_text("\n".join(sections))
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
