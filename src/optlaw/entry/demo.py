"""``optlaw demo``: the whole value of optlaw in one command, on a CPU.

It runs a real sweep on the embedded facts corpus (configs/sweep/demo.yaml: the tiny
ladder, 6.7k-74k parameters, x 262k-2.1M tokens at 5-80 tokens per parameter x AdamW,
Muon, Shampoo and SOAP; a regime where loss falls as a power law in both N and D,
docs/data.md; lr_mult tuned by the sweep's protocol on the two smallest sizes and
predicted for the others by the fitted law), then fits the per-optimizer and shared-exponent laws and their
compute-based variant, writes the report, and ends with where the report is and a
summary in plain lines: the shared law, per optimizer how many fewer tokens and
parameters it needs to reach the reference's loss, and the demo's criteria (issue 13:
interval widths, exponents away from 0, the holdout at the largest N, identifiability
and rho constancy where the fit reports them, and where every learning rate came from).

Run again with the same --out, it reuses every finished point (the sweep skips
points whose run record is done) and only refits. Ctrl-C stops it once the running
points have checkpointed (exit 130), without fitting the partial grid; run it again
to resume.
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
    print("demo criteria (issue 13):")
    for name, passed, detail in demo_checks(study.document):
        print(f"  {'yes' if passed else 'NO ' if passed is False else 'n/a'}  {name}: {detail}")
    print()
    print(f"report: {fit_dir / 'report.md'}  (fit.json and plots beside it; {time.perf_counter() - started:.0f} s)")
    for line in plain_summary(study.document):
        print(line)
    return sweep.exit_code


def _title(name: str) -> str:
    return {"adamw": "AdamW", "muon": "Muon", "shampoo": "Shampoo", "soap": "SOAP"}.get(name, name)


def _factor(value, ci, what: str) -> tuple[str, bool]:
    """A rho (or compute multiplier) in words, and whether its interval excludes 1:
    ('1.86x [1.66, 2.05] fewer tokens', True), ('tokens 0.93x [0.77, 1.25]', False)."""
    if value is None:
        return f"{what} n/a", False
    if not ci or any(c is None for c in ci):
        return f"{what} {value:.2f}x (no interval)", False
    lo, hi = ci
    if lo > 1:
        return f"{value:.2f}x [{lo:.2f}, {hi:.2f}] {'less' if what == 'compute' else 'fewer'} {what}", True
    if hi < 1:
        return f"{1 / value:.2f}x [{1 / hi:.2f}, {1 / lo:.2f}] more {what}", True
    return f"{what} {value:.2f}x [{lo:.2f}, {hi:.2f}]", False


def _optimizer_line(name: str, ref: str, v: dict) -> str:
    """'Muon reaches AdamW's loss with 1.83x [1.40, 2.14] fewer tokens (not resolved: parameters 1.14x [0.77, 1.60]).'"""
    clauses = [_factor(v.get("rho_D"), v.get("rho_D_ci"), "tokens"),
               _factor(v.get("rho_N"), v.get("rho_N_ci"), "parameters")]
    if v.get("compute_multiplier") is not None:
        clauses.append(_factor(v["compute_multiplier"], v.get("compute_multiplier_ci"), "compute"))
    resolved = [text for text, ok in clauses if ok]
    rest = [text for text, ok in clauses if not ok]
    if resolved:
        return (f"{_title(name)} reaches {_title(ref)}'s loss with " + " and ".join(resolved)
                + (f" (not resolved from 1: {', '.join(rest)})" if rest else "") + ".")
    return f"{_title(name)} is not resolved from {_title(ref)}: " + ", ".join(rest) + " (95% intervals include 1)."


def _ratio(ci) -> float | None:
    return ci[1] / ci[0] if ci and all(c is not None and c > 0 for c in ci) else None


def _verdict(entry: dict | None) -> str | None:
    """The fit's identifiability verdict of a law, when the fit reports one."""
    return ((entry or {}).get("identifiability") or {}).get("verdict")


SHORT = {  # the checks' names in the summary's last line
    "shared law identified": "shared law identified",
    "separate fits ill-conditioned": "separate fits ill-conditioned",
    "rho_D intervals at most 2x wide": "rho_D <= 2x wide",
    "rho_N intervals at most 3x wide": "rho_N <= 3x wide",
    "alpha and beta intervals exclude 0.03": "exponents exclude 0.03",
    "shared law beats separate at the largest N held out": "shared beats separate at largest N",
    "rho constancy tested": "rho constancy tested",
    "learning rates from the tuning protocol": "lr tuned or predicted",
}


def demo_checks(doc: dict) -> list[tuple[str, bool | None, str]]:
    """The demo's criteria (issue 13, point 1) on a fit.json document: (name, passed, detail).

    ``passed`` is None where the document cannot say (no bootstrap, no holdout, a fit that
    reports no identifiability verdict or rho-constancy test)."""
    ref = doc.get("reference", "adamw")
    shared = doc.get("shared") or {}
    others = {k: v for k, v in (doc.get("optimizers") or {}).items() if k != ref}
    checks: list[tuple[str, bool | None, str]] = []

    verdict = _verdict(shared)
    checks.append(("shared law identified", None if verdict is None else verdict == "identified",
                   verdict or "this fit reports no identifiability verdict"))

    separate = doc.get("separate") or {}
    verdicts = {name: _verdict(entry) for name, entry in separate.items()}
    if any(v is not None for v in verdicts.values()):
        bad = sorted(name for name, v in verdicts.items() if v != "identified")
        checks.append(("separate fits ill-conditioned", bool(bad), ", ".join(f"{n} {verdicts[n]}" for n in bad) or "all identified"))
    else:
        # Without verdicts: a separate fit whose exponent interval is wider than the shared law's.
        shared_ci = shared.get("ci") or {}
        wider = []
        for name, entry in separate.items():
            for exponent in ("alpha", "beta"):
                own, common = (entry.get("ci") or {}).get(exponent), shared_ci.get(exponent)
                if own and common and None not in own and None not in common and own[1] - own[0] > common[1] - common[0]:
                    wider.append(f"{name} {exponent} [{own[0]:.2f}, {own[1]:.2f}]")
        known = bool(shared_ci) and any((e.get("ci") or {}).get("alpha") for e in separate.values())
        checks.append(("separate fits ill-conditioned", wider != [] if known else None,
                       "exponent intervals wider than the shared law's: " + ("; ".join(wider) or "none")
                       if known else "no intervals"))

    for rho, limit in (("rho_D", 2.0), ("rho_N", 3.0)):
        ratios = {name: _ratio(v.get(f"{rho}_ci")) for name, v in others.items()}
        known = [r for r in ratios.values() if r is not None]
        passed = None if len(known) < len(ratios) or not ratios else all(r <= limit for r in known)
        checks.append((f"{rho} intervals at most {limit:g}x wide", passed,
                       ", ".join(f"{n} {r:.2f}x" if r else f"{n} n/a" for n, r in ratios.items())))

    cis = {name: (shared.get("ci") or {}).get(name) for name in ("alpha", "beta")}
    known = all(ci and None not in ci for ci in cis.values())
    checks.append(("alpha and beta intervals exclude 0.03",
                   all(not ci[0] <= 0.03 <= ci[1] for ci in cis.values()) if known else None,
                   ", ".join(f"{n} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else f"{n} n/a"
                             for n, ci in cis.items())))

    err = doc.get("holdout_error") or {}
    sh, sep = (err.get("shared") or {}).get("rmse_log"), (err.get("separate") or {}).get("rmse_log")
    checks.append(("shared law beats separate at the largest N held out",
                   None if sh is None or sep is None else sh < sep,
                   f"RMSE of log loss: shared {sh:.4f}, separate {sep:.4f}" if sh is not None and sep is not None
                   else "no holdout"))

    rc = doc.get("rho_constancy") or {}
    p, level = rc.get("p_value"), rc.get("level", 0.05)
    if p is None:
        checks.append(("rho constancy tested", None, rc.get("test") or "this fit reports no rho-constancy test"))
    else:
        drift = "rho drifts with scale" if p < level else "no drift detected"
        checks.append(("rho constancy tested", True, f"{rc.get('test')}: p = {p:.3g} at level {level:g}, {drift}"))
    checks.append(_learning_rate_check(doc))
    return checks


def _learning_rate_check(doc: dict) -> tuple[str, bool, str]:
    """Every cell's learning rate tuned by the sweep's protocol or predicted from its hyperparameter law
    (fit.json's tuning_protocol, replayed from the sweep's records); a sweep without tuning fails it."""
    name = "learning rates from the tuning protocol"
    cells = ((doc.get("tuning_protocol") or {}).get("cells")) or []
    if not cells:
        return name, False, "no tuning protocol: every learning rate is as configured"
    by_role: dict[str, list[dict]] = {}
    for cell in cells:
        by_role.setdefault(cell.get("role") or "fixed", []).append(cell)
    parts = []
    for role in ("tuned", "reused", "predicted", "fixed"):
        if role in by_role:
            sizes = sorted({c["cell"].split()[0] for c in by_role[role]}, key=lambda m: min(
                c.get("N") or 0 for c in by_role[role] if c["cell"].split()[0] == m))
            parts.append(f"{len(by_role[role])} {role} ({', '.join(sizes)})")
    unresolved = [c["cell"] for c in by_role.get("tuned", []) if not c.get("resolved")]
    if unresolved:
        parts.append(f"{len(unresolved)} tuned cell(s) unresolved")
    unfinished = [c["cell"] for c in cells if c.get("status") not in ("resolved", "unresolved", "done")]
    if unfinished:
        parts.append(f"{len(unfinished)} cell(s) not finished")
    return name, "fixed" not in by_role and not unfinished, ", ".join(parts)


def plain_summary(doc: dict) -> list[str]:
    """The plain ending: the shared law, one line per optimizer against the reference, the criteria."""
    shared = doc.get("shared") or {}
    ref = doc.get("reference", "adamw")
    verdict = _verdict(shared)
    lines = [(f"Shared law: L = {shared.get('E', float('nan')):.3f} + {shared.get('A', float('nan')):.3g}/(rho_N N)^"
              f"{shared.get('alpha', float('nan')):.3f} + {shared.get('B', float('nan')):.3g}/(rho_D D)^"
              f"{shared.get('beta', float('nan')):.3f}  ({doc.get('n_points')} runs, reference {_title(ref)}"
              + (f", {verdict}" if verdict else "") + ")")]
    for name, v in (doc.get("optimizers") or {}).items():
        if name != ref:
            lines.append(_optimizer_line(name, ref, v))
    checks = demo_checks(doc)
    lines.append("Checks: " + ", ".join(
        f"{SHORT[name]} {'yes' if ok else 'no' if ok is False else 'n/a'}" for name, ok, _ in checks) + ".")
    return lines
