"""Mirror metrics to Weights & Biases. The run id is optlaw's run id, so a resumed
run continues the same W&B run (``resume="allow"``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optlaw.errors import ConfigError

WANDB_MODES = ("online", "offline", "disabled")


def check_wandb_mode(wandb_cfg: Any) -> None:
    mode = wandb_cfg.get("mode", "disabled")
    if mode not in WANDB_MODES:
        raise ConfigError(f"wandb.mode={mode!r} is unknown; choose one of {', '.join(WANDB_MODES)}")


class WandbMirror:
    def __init__(
        self,
        wandb_cfg: Any,
        run_id: str,
        run_dir: Path,
        config: dict,
        group: str | None,
        tags: list[str],
        enabled: bool,
    ) -> None:
        check_wandb_mode(wandb_cfg)
        mode = wandb_cfg.get("mode", "disabled")
        self.run = None
        if not enabled or mode == "disabled":
            return
        import wandb  # imported only when used: it is slow to import

        self.run = wandb.init(
            mode=mode,
            project=wandb_cfg.get("project"),
            entity=wandb_cfg.get("entity"),
            group=group,
            job_type=wandb_cfg.get("job_type"),
            tags=list(wandb_cfg.get("tags") or []) + tags,
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
