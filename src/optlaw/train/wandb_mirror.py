"""Mirror metrics to Weights & Biases. The run id is optlaw's run id, so a resumed
run continues the same W&B run (``resume="allow"``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optlaw.config.train import WandbConfig, WandbMode


class WandbMirror:
    def __init__(
        self,
        wandb_cfg: WandbConfig,
        run_id: str,
        run_dir: Path,
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
            id=run_id,
            name=run_id,
            resume="allow",
            # $WANDB_DIR wins so tests and clusters can put W&B's files elsewhere.
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
        )

    def log(self, row: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if v is not None and k != "step"}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
