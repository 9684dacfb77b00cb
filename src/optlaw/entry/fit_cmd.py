"""``optlaw fit``: fit scaling laws to run records or a CSV, write fit.json, report.md and plots."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from optlaw.errors import UserError
from optlaw.fit.laws import COST_BASES, DEFAULT_BOOTSTRAP, VARIANTS
from optlaw.fit.solver import OBJECTIVES
from optlaw.fit.study import LAWS, Study, run_study, summarize
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


# Minimal stand-in written on branch arch-entry so the demo can call the fit without argv;
# H-fit's FitRequest/fit_to_dir (branch arch-fit) replaces it at merge.
@dataclass(frozen=True, kw_only=True)
class FitRequest:
    """One `optlaw fit`: where the runs are, what to fit, where to write. Defaults are the CLI's."""

    out: str | Path
    runs: list[str | Path] | None = None
    csv: str | Path | None = None
    wandb_runs: str | None = None
    law: str = "shared"
    variant: str = "full"
    reference: str = "adamw"
    bootstrap: int = DEFAULT_BOOTSTRAP
    holdout: str = "largest"
    n_basis: str | None = None
    objective: str = "huber_log"
    seeds: str = "all"
    cost: str = "flops"
    columns: dict[str, str] = field(default_factory=dict)
    default_optimizer: str | None = None
    drop_highest_loss: int = 0
    wandb: str = "disabled"
    wandb_project: str = "optlaw"
    wandb_group: str | None = None
    seed: int = 0
    cross_check: int = 0
    plots: bool = True


def fit_to_dir(request: FitRequest) -> Study:
    """Load the table, fit, write fit.json, report.md and plots into ``request.out`` (and W&B); return the study."""
    return _fit_and_write(request)[0]


def _fit_and_write(request: FitRequest) -> tuple[Study, list[Path]]:
    if request.bootstrap < 0:
        raise UserError("--bootstrap must be >= 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # they are collected into fit.json and printed by main
        if request.csv:
            table = load_csv(request.csv, request.columns, request.default_optimizer,
                             n_basis=request.n_basis or "as_given")
            if request.seeds == "mean":
                table = mean_over_seeds(table)
        elif request.wandb_runs:
            path, _, group = request.wandb_runs.partition(":")
            table = load_wandb(path, group or None, n_basis=request.n_basis or "non_embedding", seeds=request.seeds)
        else:
            table = load_runs(request.runs, n_basis=request.n_basis or "non_embedding", seeds=request.seeds)
        if request.drop_highest_loss:
            import numpy as np

            order = np.argsort(table.loss, kind="stable")
            keep = np.zeros(len(table), dtype=bool)
            keep[order[: max(len(table) - request.drop_highest_loss, 0)]] = True
            table = table.subset(keep)
            table.notes.append(f"dropped the {request.drop_highest_loss} highest-loss rows (--drop-highest-loss)")
        holdout = None if request.holdout in ("none", "") else request.holdout
        study = run_study(table, request.law, request.reference, request.variant, request.objective,
                          request.bootstrap, holdout, request.cost, request.seed, request.cross_check)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "fit.json", study.document)
    from optlaw.report import write_report  # report imports matplotlib: only when writing

    files = write_report(study, out, plots=request.plots)
    if request.wandb != "disabled":
        from optlaw.report.wandb_log import log_study

        group = request.wandb_group or (table.sweep_names[0] if len(table.sweep_names) == 1
                                        else _sweep_name(request))
        log_study(study, files, mode=request.wandb, project=request.wandb_project, group=group, out_dir=out)
    return study, files


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    args["columns"] = _column_map(args.pop("column"))
    args["plots"] = not args.pop("no_plots")
    request = FitRequest(**args)
    study, files = _fit_and_write(request)
    out = Path(request.out)
    print(summarize(study.document))
    print(f"wrote {out / 'fit.json'}, {out / 'report.md'} and {len(files) - 1} plot(s)", file=sys.stderr)
    return 0


def _sweep_name(request: FitRequest) -> str | None:
    if request.runs:
        return Path(request.runs[0]).resolve().name
    return Path(request.csv).stem
