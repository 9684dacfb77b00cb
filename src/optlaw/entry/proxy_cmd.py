"""``optlaw proxy random_features|quadratic --out DIR [key=value ...]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from optlaw.config import compose, to_plain
from optlaw.errors import UserError

STUDIES = ("random_features", "quadratic")
SPECTRUM_USAGE = """\
optlaw proxy spectrum (--input FILE.npy | --run RUN_DIR --module NAME) [--table ALPHA_JSON]
                             [key=value ...]

Estimate the power-law exponent s of a spectrum and predict the alpha shift over gd that
kron, sign and ngd bring (theory: the deterministic equivalent under the random-feature
study's setting, configs/proxy/random_features.yaml, overridable as key=value; and, with
--table, read off a measured alpha.json).
  --input FILE.npy   1-D: eigenvalues; 2-D: samples x features (data, activations, gradients)
  --run RUN_DIR      an optlaw LLM run: the input covariance of --module on its held-out split
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optlaw proxy",
        description="Run a proxy study. Overrides are Hydra key=value pairs on configs/proxy/<study>.yaml.",
    )
    p.add_argument("study", choices=STUDIES,
                   help="random_features: alpha vs spectrum; quadratic: (N, D) laws; "
                        "(also: optlaw proxy spectrum --help)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. seeds=[0,1] steps=12")
    return p


def main(argv: list[str]) -> int:
    if argv and argv[0] == "spectrum":
        return main_spectrum(argv[1:])
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


def main_spectrum(argv: list[str]) -> int:
    import numpy as np

    from optlaw.proxy.diagnostic import estimate_s, interpolate_shift, predict_alpha_shift, spectrum_from_samples

    p = argparse.ArgumentParser(prog="optlaw proxy spectrum", usage=SPECTRUM_USAGE)
    p.add_argument("--input")
    p.add_argument("--run")
    p.add_argument("--module")
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--table")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args(argv)
    if bool(args.input) == bool(args.run):
        raise UserError("give exactly one of --input FILE.npy or --run RUN_DIR (with --module NAME)")
    if args.input:
        try:
            arr = np.load(args.input)
        except (OSError, ValueError) as exc:
            raise UserError(f"--input {args.input} is not a readable .npy array ({type(exc).__name__})") from None
        eig = arr if arr.ndim == 1 else spectrum_from_samples(arr)
    else:
        if not args.module:
            raise UserError("--run needs --module NAME, e.g. --module model.layers.0.mlp.down_proj")
        from optlaw.entry.llm_spectrum import run_activation_spectrum

        eig = run_activation_spectrum(args.run, args.module, args.tokens)
    fit = estimate_s(eig)
    cfg = to_plain(compose("proxy/random_features", list(args.overrides)))
    setting = {"N_values": sorted(cfg["N_values"]), "steps": cfg["steps"], "damping": cfg["damping"],
               "source_r": cfg["source_r"], "input_dim": cfg["input_dim"],
               "multipliers": cfg["step_size_multipliers"]}
    print(f"s_hat = {fit.s:.3f} (ranks {fit.rank_range[0]}-{fit.rank_range[1]} of {len(eig)}, R^2 {fit.r_squared:.3f})")
    theory = predict_alpha_shift(fit.s, ["kron", "sign", "ngd"], **setting)
    table = None
    if args.table:
        table = json.loads(Path(args.table).read_text())["shift_over_gd"]
    print("predicted alpha shift over gd:")
    for name, value in theory.items():
        line = f"  {name:<5} theory {value:+.3f}"
        if table and name in table:
            measured = {k: v["shift"] for k, v in table[name].items()}
            line += f"   from table {interpolate_shift(measured, fit.s, name):+.3f}"
            s_known = [float(k) for k in measured]
            if not min(s_known) <= fit.s <= max(s_known):
                line += f" (extrapolated: the table covers s in [{min(s_known):g}, {max(s_known):g}])"
        print(line)
    return 0
