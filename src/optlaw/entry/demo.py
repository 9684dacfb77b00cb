"""``optlaw demo``: the whole value of optlaw in one command, on a CPU.

It runs a real sweep on the embedded synthetic corpus (configs/sweep/demo.yaml:
3 model sizes x 3 token budgets x AdamW, Muon, Shampoo and SOAP), then fits the
per-optimizer and shared-exponent laws and their compute-based variant, writes
the report, and ends with where the report is and a three-line summary.

Run again with the same --out, it reuses every finished point (the sweep skips
points whose run record is done) and only refits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from optlaw.errors import UserError

DEFAULT_OUT = "optlaw-demo"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"optlaw demo: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="optlaw demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--sweep", default="demo", help="sweep config under configs/sweep/ (default: demo)")
    p.add_argument("--max-parallel", type=int, default=2,
                   help="points trained at once (default 2: one per core on a 2-core laptop)")
    p.add_argument("--bootstrap", type=int, default=300, help="bootstrap replicates for the intervals (default 300)")
    p.add_argument("--wandb", choices=("disabled", "offline", "online"), default="disabled",
                   help="mirror runs and the report to Weights & Biases (default: disabled)")
    p.add_argument("overrides", nargs="*", help="extra KEY=VALUE overrides passed to `optlaw sweep`")
    return p


def main(argv: list[str] | None = None) -> int:
    from optlaw.entry.fit_cmd import FitRequest, fit_to_dir
    from optlaw.entry.sweep_cmd import SweepRequest, run_sweep
    from optlaw.fit.study import summarize

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    sweep_dir = out / "sweep"
    fit_dir = out / "fit"
    started = time.perf_counter()
    print(f"optlaw demo: sweep '{args.sweep}' into {sweep_dir} (finished points are reused)", flush=True)
    mirror = [f"wandb.mode={args.wandb}"] if args.wandb != "disabled" else []
    sweep = run_sweep(SweepRequest(sweep=args.sweep, launcher="local", sweep_dir=sweep_dir,
                                   overrides=(f"launcher.max_parallel={args.max_parallel}", *args.overrides, *mirror)))
    if not sweep.finished:
        print("some points did not finish; fitting what is done (rerun the demo to retry the rest)", flush=True)
    print(f"optlaw demo: fitting laws into {fit_dir}", flush=True)
    study = fit_to_dir(FitRequest(runs=[sweep_dir], out=fit_dir, law="compute", bootstrap=args.bootstrap,
                                  wandb=args.wandb))
    print(summarize(study.document))
    print()
    print(f"report: {fit_dir / 'report.md'}  (fit.json and plots beside it; {time.perf_counter() - started:.0f} s)")
    for line in three_line_summary(study.document):
        print(line)
    return sweep.exit_code


def _fmt_ci(value, ci) -> str:
    if value is None:
        return "n/a"
    if ci and all(c is not None for c in ci):
        return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{value:.2f}"


def three_line_summary(doc: dict) -> list[str]:
    """Exponents, efficiency factors and compute multipliers, one line each."""
    shared = doc.get("shared") or {}
    ref = doc.get("reference", "adamw")
    line1 = (f"shared law: L = {shared.get('E', float('nan')):.3f} + {shared.get('A', float('nan')):.3g}/(rho_N N)^"
             f"{shared.get('alpha', float('nan')):.3f} + {shared.get('B', float('nan')):.3g}/(rho_D D)^"
             f"{shared.get('beta', float('nan')):.3f}  ({doc.get('n_points')} runs, reference {ref})")
    others = {k: v for k, v in (doc.get("optimizers") or {}).items() if k != ref}
    line2 = "efficiency vs " + ref + ": " + "; ".join(
        f"{name} rho_N {_fmt_ci(v.get('rho_N'), v.get('rho_N_ci'))}, rho_D {_fmt_ci(v.get('rho_D'), v.get('rho_D_ci'))}"
        for name, v in others.items()
    )
    multipliers = {name: v for name, v in others.items() if v.get("compute_multiplier") is not None}
    if multipliers:
        line3 = f"compute multiplier vs {ref} (loss-matched, measured step cost charged): " + "; ".join(
            f"{name} {_fmt_ci(v['compute_multiplier'], v.get('compute_multiplier_ci'))}" for name, v in multipliers.items()
        )
    else:
        line3 = "compute-based comparison: not fitted (see the report's warnings)"
    return [line1, line2, line3]
