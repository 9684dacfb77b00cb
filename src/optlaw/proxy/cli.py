"""``optlaw proxy random_features|quadratic --out DIR [key=value ...]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from optlaw.config import compose, to_plain
from optlaw.errors import UserError

STUDIES = ("random_features", "quadratic")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optlaw proxy",
        description="Run a proxy study. Overrides are Hydra key=value pairs on configs/proxy/<study>.yaml.",
    )
    p.add_argument("study", choices=STUDIES, help="random_features: alpha vs spectrum; quadratic: (N, D) laws")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. seeds=[0,1] steps=12")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)
    cfg = to_plain(compose(f"proxy/{args.study}", list(args.overrides)))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; give a folder path")
    if args.study == "random_features":
        from optlaw.proxy.rf_study import run_study

        result = run_study(cfg, out)
        _print_alpha(result)
    else:
        from optlaw.proxy.quadratic_study import run_study

        result = run_study(cfg, out)
        print(json.dumps(result["summary"], indent=2))
    print(f"wrote {out}/report.md")
    return 0


def _print_alpha(result: dict) -> None:
    alpha = result["alpha"]
    s_keys = list(next(iter(alpha.values())).keys())
    print("alpha (95% interval) by optimizer and s:")
    print("optimizer  " + "  ".join(f"{'s=' + k:>20}" for k in s_keys))
    for o, row in alpha.items():
        cells = []
        for k in s_keys:
            e = row[k]
            ci = f"[{e['ci'][0]:.2f},{e['ci'][1]:.2f}]" if e["ci"] else ""
            cells.append(f"{e['alpha']:.3f} {ci:>13}")
        print(f"{o:<10} " + "  ".join(f"{c:>20}" for c in cells))
