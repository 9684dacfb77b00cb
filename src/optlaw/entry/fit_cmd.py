"""``optlaw fit``: fit scaling laws to run records or a CSV, write fit.json, report.md and plots."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from optlaw.errors import UserError
from optlaw.fit.laws import COST_BASES, DEFAULT_BOOTSTRAP, VARIANTS
from optlaw.fit.solver import OBJECTIVES
from optlaw.fit.study import LAWS, run_study, summarize
from optlaw.fit.table import N_BASES, SEED_MODES, FitWarning, load_csv, load_runs, load_wandb, mean_over_seeds
from optlaw.records import write_json_atomic

WANDB_MODES = ("disabled", "offline", "online")


class _Parser(argparse.ArgumentParser):
    # argparse exits on its own; turn its one-line messages into UserError (exit 2 via optlaw.entry.cli).
    def error(self, message):
        raise UserError(f"optlaw fit: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="optlaw fit", description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--runs", nargs="+", metavar="SWEEP_DIR", help="sweep directories holding run.json records")
    src.add_argument("--csv", metavar="FILE", help="CSV with columns optimizer,N,D,loss (+ seed,flops,step_cost,family)")
    src.add_argument("--wandb-runs", metavar="ENTITY/PROJECT[:GROUP]",
                     help="runs stored in W&B (their summaries hold the run-record fields); GROUP = sweep name")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for fit.json, report.md, plots")
    p.add_argument("--law", choices=LAWS, default="shared", help="headline law (separate and shared are always fitted)")
    p.add_argument("--variant", choices=VARIANTS, default="full", help="shared law: both rho's, rho_D only, rho_N only")
    p.add_argument("--reference", default="adamw", help="optimizer with rho_N = rho_D = 1 (default adamw)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap replicates by cell (0: none)")
    p.add_argument("--holdout", default="largest",
                   help="'largest' (largest N), 'none', or cells optimizer:N:D,optimizer:N:D")
    p.add_argument("--n-basis", choices=N_BASES, default=None,
                   help="which N of run records to fit (default non_embedding); for a CSV, what its N column is")
    p.add_argument("--objective", choices=OBJECTIVES, default="huber_log")
    p.add_argument("--seeds", choices=SEED_MODES, default="all", help="fit every seed, or the mean per cell")
    p.add_argument("--cost", choices=COST_BASES, default="flops", help="compute law: FLOPs x step cost, or wall-clock")
    p.add_argument("--column", action="append", default=[], metavar="NAME=CSV_COLUMN",
                   help="CSV column mapping, e.g. --column N=N_nonembed --column loss=loss_c4_en (repeatable)")
    p.add_argument("--default-optimizer", help="optimizer name for a CSV without an optimizer column")
    p.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                   help="drop the K highest-loss rows first (the Chinchilla replication drops 5)")
    p.add_argument("--wandb", choices=WANDB_MODES, default="disabled", help="log tables and plots to W&B")
    p.add_argument("--wandb-project", default="optlaw")
    p.add_argument("--wandb-group", default=None, help="W&B group (default: the sweep name of the records)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    p.add_argument("--cross-check", type=int, default=0, metavar="K",
                   help="also run Hoffmann et al.'s multi-start L-BFGS from K of its 4,500 grid starts (slow)")
    p.add_argument("--no-plots", action="store_true", help="write fit.json and report.md without PNGs")
    return p


def _column_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--column {item!r} is not NAME=CSV_COLUMN; e.g. --column N=N_nonembed")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bootstrap < 0:
        raise UserError("--bootstrap must be >= 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # they are collected into fit.json and printed below
        if args.csv:
            table = load_csv(args.csv, _column_map(args.column), args.default_optimizer,
                             n_basis=args.n_basis or "as_given")
            if args.seeds == "mean":
                table = mean_over_seeds(table)
        elif args.wandb_runs:
            path, _, group = args.wandb_runs.partition(":")
            table = load_wandb(path, group or None, n_basis=args.n_basis or "non_embedding", seeds=args.seeds)
        else:
            table = load_runs(args.runs, n_basis=args.n_basis or "non_embedding", seeds=args.seeds)
        if args.drop_highest_loss:
            import numpy as np

            order = np.argsort(table.loss, kind="stable")
            keep = np.zeros(len(table), dtype=bool)
            keep[order[: max(len(table) - args.drop_highest_loss, 0)]] = True
            table = table.subset(keep)
            table.notes.append(f"dropped the {args.drop_highest_loss} highest-loss rows (--drop-highest-loss)")
        holdout = None if args.holdout in ("none", "") else args.holdout
        study = run_study(table, args.law, args.reference, args.variant, args.objective, args.bootstrap,
                          holdout, args.cost, args.seed, args.cross_check)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "fit.json", study.document)
    from optlaw.report import write_report  # report imports matplotlib: only when writing

    files = write_report(study, out, plots=not args.no_plots)
    if args.wandb != "disabled":
        from optlaw.report.wandb_log import log_study

        group = args.wandb_group or (table.sweep_names[0] if len(table.sweep_names) == 1 else _sweep_name(args))
        log_study(study, files, mode=args.wandb, project=args.wandb_project, group=group, out_dir=out)
    print(summarize(study.document))
    print(f"wrote {out / 'fit.json'}, {out / 'report.md'} and {len(files) - 1} plot(s)", file=sys.stderr)
    return 0


def _sweep_name(args) -> str | None:
    if args.runs:
        return Path(args.runs[0]).resolve().name
    return Path(args.csv).stem
