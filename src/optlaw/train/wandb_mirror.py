"""Mirror metrics to Weights & Biases, in the namespaces W&B users expect.

One W&B run per run directory: its id is optlaw's run id plus a random suffix drawn when
the directory starts training, kept in the record and in every checkpoint, so a resume
continues exactly its own W&B run while the same point trained in a second sweep folder
starts another. Charts default to tokens on the x-axis (``define_metric``); ``step`` is
logged too, for those who want it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from optlaw.config.train import WandbConfig, WandbMode

# metrics.jsonl key -> W&B name. Every logged metric sits in one of NAMESPACES; `lr` (a dict
# of parameter group -> learning rate) becomes lr/<group>.
WANDB_NAMES: dict[str, str] = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "grad_norm": "optim/grad_norm",
    "lr_factor": "lr/schedule_factor",
    "tokens_per_s": "perf/tokens_per_s",
    "mfu": "perf/mfu",
    "step_s": "perf/step_s",
    "fwd_bwd_s": "perf/fwd_bwd_s",
    "optimizer_step_s": "perf/optimizer_step_s",
    "data_wait_s": "perf/data_wait_s",
    "wall_time_s": "perf/wall_time_s",
}
NAMESPACES = ("train", "val", "perf", "lr", "optim")
X_AXES = ("tokens", "step")


def new_wandb_id(run_id: str) -> str:
    """A W&B run id for a run directory starting now: the point's id, then 8 random hex digits.

    W&B ids may be at most 64 characters; the point id is cut to fit and the random part kept.
    """
    return f"{run_id[:55]}-{secrets.token_hex(4)}"


def wandb_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics.jsonl row under W&B names (None values dropped: W&B would chart them as NaN)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            continue
        if key == "lr" and isinstance(value, dict):
            out.update({f"lr/{group}": lr for group, lr in value.items()})
        elif key in X_AXES:
            out[key] = value
        else:
            out[WANDB_NAMES.get(key, key if "/" in key else f"train/{key}")] = value
    return out


class WandbMirror:
    def __init__(
        self,
        wandb_cfg: WandbConfig,
        run_id: str,
        run_dir: Path,
        wandb_id: str,
        config: dict,
        group: str | None,
        tags: list[str],
        enabled: bool,
    ) -> None:
        self.run = None
        if not enabled or wandb_cfg.mode == WandbMode.disabled:
            return
        import wandb  # imported only when used: it is slow to import

        self.run = wandb.init(
            mode=wandb_cfg.mode.value,
            project=wandb_cfg.project,
            entity=wandb_cfg.entity,
            group=group,
            job_type=wandb_cfg.job_type,
            tags=list(wandb_cfg.tags) + tags,
            config=config,
            id=wandb_id,
            name=run_id,
            resume="allow",
            # $WANDB_DIR wins so tests and clusters can put W&B's files elsewhere.
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
        )
        self.run.define_metric("tokens")
        self.run.define_metric("step")
        for namespace in NAMESPACES:
            self.run.define_metric(f"{namespace}/*", step_metric="tokens")
        self.run.define_metric("val/loss", step_metric="tokens", summary="min,last")

    def log(self, row: dict[str, Any], step: int) -> None:
        """Log one metrics.jsonl row (docs/run_record.md) at optimizer step ``step``."""
        if self.run is not None:
            self.run.log(wandb_row({**row, "step": step}), step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            finish_and_flush(self.run, exit_code=exit_code)
            self.run = None


def finish_and_flush(run: Any, exit_code: int = 0) -> None:
    """Finish ``run`` and wait until W&B's service has written its files.

    ``run.finish()`` only tells the wandb-core service that the run is over; the service
    closes (and flushes) the run's ``.wandb`` file later, on its own. A process that reads
    the file, or exits, right after ``finish()`` can find only the file's header (seen in
    CI about one time in three). ``wandb.teardown()`` is W&B's documented way to wait for
    the service to finish all its work; we call it only when no other run of this process
    is still open, since it would finish those too (the next ``wandb.init`` starts a fresh
    service).
    """
    import wandb

    run.finish(exit_code=exit_code)
    if _other_runs_open():
        return
    wandb.teardown(exit_code=exit_code)


def _other_runs_open() -> bool:
    """Whether this process still has an unfinished W&B run (wandb keeps the list in its setup singleton)."""
    from wandb.sdk import wandb_setup

    singleton = getattr(wandb_setup, "_singleton", None)
    if singleton is None:
        return False
    return getattr(singleton, "most_recent_active_run", None) is not None
