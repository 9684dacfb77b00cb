"""``optlaw fit``: fit scaling laws to run records or a CSV, write fit.json, report.md and plots.

The entry layer joins the stages: ``fit_to_dir`` loads the table and runs the study
(``optlaw.fit``), then writes fit.json and hands the study to the report (``optlaw.report``),
which never imports fit. ``main`` is the command line around it; other commands (the demo)
build a ``FitRequest`` and call ``fit_to_dir`` directly.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optlaw.errors import UserError
from optlaw.fit import (
    LAWS, OBJECTIVES, VARIANTS, RunTable, Study, load_csv, load_runs, load_wandb, mean_over_seeds, run_study,
)
from optlaw.fit.laws import COST_BASES, DEFAULT_BOOTSTRAP
from optlaw.fit.table import N_BASES, SEED_MODES
from optlaw.jsonio import write_json_atomic

WANDB_MODES = ("disabled", "offline", "online")


@dataclass(frozen=True, kw_only=True)
class FitRequest:
    """One ``optlaw fit``: where the runs come from (exactly one of ``runs``, ``csv``,
    ``wandb_runs``), where the outputs go, and how to fit. Defaults are the CLI's."""

    out: str | Path
    runs: tuple[str | Path, ...] = ()             # sweep directories holding run.json records
    csv: str | Path | None = None                 # CSV with columns optimizer,N,D,loss (+ optional ones)
    wandb_runs: str | None = None                 # ENTITY/PROJECT[:GROUP], runs stored in W&B
    law: str = "shared"                           # headline law; separate and shared are always fitted
    variant: str = "full"
    reference: str = "adamw"
    bootstrap: int = DEFAULT_BOOTSTRAP            # replicates by cell; 0: no intervals
    holdout: str | None = "largest"               # 'largest', cells optimizer:N:D,..., or None
    n_basis: str | None = None                    # None: non_embedding for records, as_given for a CSV
    objective: str = "huber_log"
    seeds: str = "all"
    cost: str = "flops"
    columns: dict[str, str] = field(default_factory=dict)   # CSV column mapping, our name -> CSV's
    tuning_column: str | None = None              # CSV: several rows per cell are settings of this column
    seed_column: str | None = None                # CSV: several rows per cell are seeds named by this column
    default_optimizer: str | None = None
    drop_highest_loss: int = 0                    # drop the K highest-loss rows first
    wandb: str = "disabled"
    wandb_project: str = "optlaw"
    wandb_group: str | None = None                # default: the sweep name of the records
    seed: int = 0                                 # bootstrap random seed
    cross_check: int = 0                          # starts of Hoffmann's multi-start L-BFGS (0: none)
    plots: bool = True

    def __post_init__(self):
        if isinstance(self.runs, (str, Path)):  # one directory given bare
            object.__setattr__(self, "runs", (self.runs,))
        sources = [name for name, given in (("runs", bool(self.runs)), ("csv", self.csv is not None),
                                            ("wandb_runs", self.wandb_runs is not None)) if given]
        if len(sources) != 1:
            raise UserError("give exactly one source of runs: runs (--runs), csv (--csv) or wandb_runs "
                            f"(--wandb-runs); got {', '.join(sources) or 'none'}")
        for name, value, choices in (("law", self.law, LAWS), ("variant", self.variant, VARIANTS),
                                     ("objective", self.objective, OBJECTIVES), ("seeds", self.seeds, SEED_MODES),
                                     ("cost", self.cost, COST_BASES), ("wandb", self.wandb, WANDB_MODES)):
            if value not in choices:
                raise UserError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.n_basis is not None and self.n_basis not in N_BASES:
            raise UserError(f"n_basis must be one of {', '.join(N_BASES)}, got {self.n_basis!r}")
        if self.csv is None and (self.tuning_column or self.seed_column):
            raise UserError("--tuning-column and --seed-column are for --csv input; run records name their "
                            "hyperparameters and seeds themselves")
        for name in ("bootstrap", "drop_highest_loss", "cross_check"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0")


def load_table(request: FitRequest) -> RunTable:
    """The run table the request names, with --drop-highest-loss applied."""
    if request.csv is not None:
        table = load_csv(request.csv, request.columns, request.default_optimizer,
                         n_basis=request.n_basis or "as_given", tuning_column=request.tuning_column,
                         seed_column=request.seed_column)
        if request.seeds == "mean":
            table = mean_over_seeds(table)
    elif request.wandb_runs is not None:
        path, _, group = request.wandb_runs.partition(":")
        table = load_wandb(path, group or None, n_basis=request.n_basis or "non_embedding", seeds=request.seeds)
    else:
        table = load_runs(list(request.runs), n_basis=request.n_basis or "non_embedding", seeds=request.seeds)
    if request.drop_highest_loss:
        order = np.argsort(table.loss, kind="stable")
        keep = np.zeros(len(table), dtype=bool)
        keep[order[: max(len(table) - request.drop_highest_loss, 0)]] = True
        table = table.subset(keep)
        table.warn(f"dropped the {request.drop_highest_loss} highest-loss rows (--drop-highest-loss)")
    return table


def fit_to_dir(request: FitRequest) -> Study:
    """Load the table, fit every law, write fit.json, report.md and plots into ``request.out``,
    and log them to W&B when asked. Returns the study (``study.document`` is fit.json)."""
    table = load_table(request)
    study = run_study(table, law=request.law, reference=request.reference, variant=request.variant,
                      objective=request.objective, bootstrap=request.bootstrap, holdout=request.holdout or None,
                      cost=request.cost, seed=request.seed, cross_check_starts=request.cross_check)
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
    return study


def _sweep_name(request: FitRequest) -> str | None:
    if request.runs:
        return Path(request.runs[0]).resolve().name
    if request.csv is not None:
        return Path(request.csv).stem
    return None


# ----------------------------------------------------------------------------- command line

class _Parser(argparse.ArgumentParser):
    # argparse exits on its own; turn its one-line messages into UserError (exit 2 via optlaw.entry.cli).
    def error(self, message):
        raise UserError(f"optlaw fit: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="optlaw fit", description=__doc__.split("\n\n")[0])
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
    p.add_argument("--tuning-column", metavar="COL",
                   help="CSV with several rows per (optimizer, N, D) cell: they are settings of COL (e.g. peak_lr); "
                        "each cell keeps its best")
    p.add_argument("--seed-column", metavar="COL",
                   help="CSV with several rows per cell: they are seeds named by COL (a column 'seed' counts as one)")
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


def request_from_args(args: argparse.Namespace) -> FitRequest:
    return FitRequest(
        out=args.out, runs=tuple(args.runs or ()), csv=args.csv, wandb_runs=args.wandb_runs, law=args.law,
        variant=args.variant, reference=args.reference, bootstrap=args.bootstrap,
        holdout=None if args.holdout in ("none", "") else args.holdout, n_basis=args.n_basis,
        objective=args.objective, seeds=args.seeds, cost=args.cost, columns=_column_map(args.column),
        tuning_column=args.tuning_column, seed_column=args.seed_column,
        default_optimizer=args.default_optimizer, drop_highest_loss=args.drop_highest_loss, wandb=args.wandb,
        wandb_project=args.wandb_project, wandb_group=args.wandb_group, seed=args.seed,
        cross_check=args.cross_check, plots=not args.no_plots)


def main(argv: list[str] | None = None) -> int:
    request = request_from_args(build_parser().parse_args(argv))
    study = fit_to_dir(request)
    out = Path(request.out)
    print(study.summary())
    print(f"wrote {out / 'fit.json'} and {out / 'report.md'}" + (", plots beside them" if request.plots else ""),
          file=sys.stderr)
    return 0
