"""Research: a demo's wall time against the sum of its points' training times (issue 13, point 3).

usage: demo_timing.py SWEEP_DIR WALL_SECONDS [--parallel 2]

Reads every run record of the sweep (`wall_time_s`: the point's own training time, in its worker)
and prints the points by tuning source, their summed training time, and two ratios:
wall / sum (1/P is perfect packing with P points at a time) and wall x P / sum (1.0 = the
launch, planning, rounds and fits add nothing on top of training; the issue's target is <= 1.25).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from optlaw.records import iter_json


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("sweep_dir")
    p.add_argument("wall", type=float)
    p.add_argument("--parallel", type=int, default=2)
    a = p.parse_args()
    by_source: dict[str, list[float]] = {}
    for _, rec in iter_json(Path(a.sweep_dir, "runs")):
        if not isinstance(rec, dict):
            continue  # an unreadable record has no training time to count
        source = (rec.get("tuning") or {}).get("source") or "fixed"
        by_source.setdefault(source, []).append(float(rec.get("wall_time_s") or 0.0))
    total = sum(sum(v) for v in by_source.values())
    for source, times in sorted(by_source.items()):
        print(f"{source:10s} {len(times):3d} points  {sum(times):8.1f} s training")
    print(f"all        {sum(len(v) for v in by_source.values()):3d} points  {total:8.1f} s training; demo wall {a.wall:.1f} s")
    print(f"wall / sum = {a.wall / total:.3f} (perfect packing: {1 / a.parallel:.2f}); "
          f"wall x {a.parallel} / sum = {a.wall * a.parallel / total:.3f} (target <= 1.25)")


if __name__ == "__main__":
    main()
