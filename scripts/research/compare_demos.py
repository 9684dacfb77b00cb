"""Research: how far two runs of the demo on different machine settings moved (issue 13, point 4).

usage: compare_demos.py DEMO_A DEMO_B

DEMO_A and DEMO_B are `optlaw demo --out` folders of the same sweep run under two machine
settings (another CPU, thread count or ISA cap). Prints what differed in the records'
`machine`, how far the final losses of the runs both share (same run id) moved, whether
each tuning cell kept its winner, and each optimizer's rho_N, rho_D and compute multiplier
from both fits, with whether B's value lies inside A's interval and A's inside B's.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from optlaw.records import iter_json


def finished(sweep_dir: Path) -> dict[str, dict]:
    return {rec["run_id"]: rec for _, rec in iter_json(sweep_dir / "runs")
            if isinstance(rec, dict) and rec.get("status") == "done" and rec.get("final_val_loss") is not None}


def machines(runs: dict[str, dict]) -> set[str]:
    return {json.dumps(r.get("machine"), sort_keys=True) for r in runs.values()}


def machine_differences(a: dict[str, dict], b: dict[str, dict]) -> list[str]:
    ma = [json.loads(m) or {} for m in machines(a)]
    mb = [json.loads(m) or {} for m in machines(b)]
    keys = sorted({k for m in ma + mb for k in m})
    lines = []
    for key in keys:
        va = sorted({json.dumps(m.get(key)) for m in ma})
        vb = sorted({json.dumps(m.get(key)) for m in mb})
        if va != vb:
            lines.append(f"  {key}: A {', '.join(va)}  B {', '.join(vb)}")
    return lines


def ns_dtypes(runs: dict[str, dict]) -> set[str]:
    return {str(((r.get("choices") or {}).get("muon.ns_dtype") or {}).get("value"))
            for r in runs.values() if r.get("optimizer") == "muon"}


def winners(doc: dict) -> dict[str, str]:
    """tuned cell -> its winning setting, from fit.json's tuning protocol."""
    out = {}
    for cell in (doc.get("tuning_protocol") or {}).get("cells") or []:
        if cell.get("role") == "tuned" and cell.get("setting"):
            out[cell["cell"]] = json.dumps(cell["setting"], sort_keys=True)
    return out


def inside(value, ci) -> str:
    if value is None or not ci or None in ci:
        return "n/a"
    return "yes" if ci[0] <= value <= ci[1] else "NO"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("demo_a")
    p.add_argument("demo_b")
    args = p.parse_args()
    a_dir, b_dir = Path(args.demo_a), Path(args.demo_b)
    a, b = finished(a_dir / "sweep"), finished(b_dir / "sweep")
    print("machine settings that differ:")
    print("\n".join(machine_differences(a, b)) or "  none")
    print(f"Muon Newton-Schulz dtype: A {sorted(ns_dtypes(a))}  B {sorted(ns_dtypes(b))}")
    shared = sorted(set(a) & set(b))
    diffs = [abs(a[r]["final_val_loss"] - b[r]["final_val_loss"]) for r in shared]
    equal = sum(d == 0 for d in diffs)
    print(f"runs in both: {len(shared)} (A {len(a)}, B {len(b)}); bitwise equal final losses: {equal}")
    if diffs:
        ordered = sorted(diffs)
        print(f"|loss A - loss B|: median {statistics.median(diffs):.4f}, 90th percentile "
              f"{ordered[int(0.9 * (len(ordered) - 1))]:.4f}, max {max(diffs):.4f} nats")
    fa, fb = (json.loads((d / "fit" / "fit.json").read_text()) for d in (a_dir, b_dir))
    wa, wb = winners(fa), winners(fb)
    cells = sorted(set(wa) & set(wb))
    flipped = [c for c in cells if wa[c] != wb[c]]
    print(f"tuned cells in both: {len(cells)}; winner changed in {len(flipped)}" + (f": {'; '.join(flipped)}" if flipped else ""))
    print(f"{'optimizer':9s} {'quantity':18s} {'A':>24s} {'B':>24s}  B in A's CI  A in B's CI")
    for name in fa.get("optimizers") or {}:
        if name == fa.get("reference"):
            continue
        va, vb = fa["optimizers"][name], (fb.get("optimizers") or {}).get(name) or {}
        for key in ("rho_N", "rho_D", "compute_multiplier"):
            ca, cb = va.get(f"{key}_ci"), vb.get(f"{key}_ci")
            text = [f"{v[key]:.3f} [{c[0]:.2f}, {c[1]:.2f}]" if v.get(key) is not None and c else "n/a"
                    for v, c in ((va, ca), (vb, cb))]
            print(f"{name:9s} {key:18s} {text[0]:>24s} {text[1]:>24s}  {inside(vb.get(key), ca):11s}  "
                  f"{inside(va.get(key), cb)}")
    sa, sb = fa.get("shared") or {}, fb.get("shared") or {}
    for exponent in ("alpha", "beta"):
        text = []
        for s in (sa, sb):
            ci = (s.get("ci") or {}).get(exponent)
            text.append(f"{s.get(exponent, float('nan')):.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else ""))
        print(f"shared {exponent}: A {text[0]}  B {text[1]}")


if __name__ == "__main__":
    main()
