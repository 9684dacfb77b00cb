"""Log a fitting study's tables and plots to W&B, in the sweep's group so they sit in its dashboard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from optlaw.errors import UserError
from optlaw.train.wandb_mirror import finish_and_flush

if TYPE_CHECKING:
    from optlaw.fit import Study


def log_study(study: Study, files: list[Path], mode: str = "offline", project: str = "optlaw", group: str | None = None,
              out_dir: str | os.PathLike | None = None) -> str:
    """One W&B run of job_type 'fit': shared and per-optimizer tables, conditioning, holdout, images.

    Returns the run's local directory. ``WANDB_DIR`` decides where offline files go.
    """
    try:
        import wandb
    except ImportError as exc:  # pragma: no cover - wandb is a dependency
        raise UserError("wandb is not installed; pip install wandb or use --wandb disabled") from exc
    doc = study.document
    run = wandb.init(project=project, group=group, job_type="fit", mode=mode,
                     dir=os.environ.get("WANDB_DIR") or (str(out_dir) if out_dir else None),
                     config={k: doc[k] for k in ("law", "variant", "objective", "reference", "n_basis", "n_points",
                                                 "bootstrap_replicates")})
    try:
        if doc.get("shared"):
            s = doc["shared"]
            run.summary.update({f"shared/{k}": s[k] for k in ("E", "A", "B", "alpha", "beta", "allocation_exponent")})
            cols = ["optimizer", "rho_N", "rho_N_lo", "rho_N_hi", "rho_D", "rho_D_lo", "rho_D_hi", "n_cells", "rmse"]
            rows = [[o, v["rho_N"], *(v["rho_N_ci"] or [None, None]), v["rho_D"], *(v["rho_D_ci"] or [None, None]),
                     v["n_cells"], v["rmse"]] for o, v in doc["optimizers"].items()]
            run.log({"fit/optimizers": wandb.Table(columns=cols, data=rows)})
        if doc["separate"]:
            cols = ["optimizer", "E", "A", "B", "alpha", "beta", "condition_number", "rmse"]
            rows = [[o] + [v[k] for k in cols[1:]] for o, v in doc["separate"].items()]
            run.log({"fit/separate": wandb.Table(columns=cols, data=rows)})
        if doc["conditioning"]:
            run.log({"fit/conditioning": wandb.Table(
                columns=["fit", "n_params", "condition_number", "max_abs_correlation"],
                data=[[r["fit"], r["n_params"], r["condition_number"], r["max_abs_correlation"]]
                      for r in doc["conditioning"]])})
        if doc["holdout"]:
            keys = list(doc["holdout"][0])
            run.log({"fit/holdout": wandb.Table(columns=keys, data=[[c[k] for k in keys] for c in doc["holdout"]])})
        images = {f"fit/{p.stem}": wandb.Image(str(p)) for p in files if p.suffix == ".png"}
        if images:
            run.log(images)
        report = next((p for p in files if p.name == "report.md"), None)
        if report is not None:
            run.save(str(report), base_path=str(report.parent), policy="now")
        return str(run.dir)
    finally:
        finish_and_flush(run)
