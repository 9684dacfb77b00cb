"""Every side effect of an LLM run except checkpoints, in one object: the run directory's
files (config.yaml, routing.json), metrics.jsonl, run.json and the W&B mirror.

The loop calls ``log``/``evaluated`` while it trains and one ending (``done``,
``diverged``, ``preempted``, ``failed``); each call writes the record once, with its
progress fields taken from the loop state at that moment, so the record on disk is never
behind the last line of metrics.jsonl. Rank 0 writes; on the other ranks the same calls
keep the in-memory record only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optlaw import records
from optlaw.config.train import TrainConfig
from optlaw.jsonio import write_atomic, write_json_atomic
from optlaw.optim.cost import step_cost_ratio
from optlaw.train.budget import BudgetPlan
from optlaw.train.identity import budget_label
from optlaw.train.metrics import MetricsLog, mfu, print_progress, progress_line
from optlaw.train.record import now
from optlaw.train.wandb_mirror import WandbMirror, new_wandb_id


class RunOutputs:
    """metrics.jsonl, run.json and W&B of one run (see the module docstring)."""

    def __init__(self, run_dir: Path, is_main: bool, record: records.LLMRunRecord, state: Any, plan: BudgetPlan,
                 peak_flops: float | None) -> None:
        self.run_dir, self.is_main, self.record = Path(run_dir), is_main, record
        self.state, self.plan, self.peak_flops = state, plan, peak_flops  # state: the loop's LoopState
        self.metrics: MetricsLog | None = None
        self.mirror: WandbMirror | None = None
        self.progress = False

    def open(self, cfg: DictConfig, run_cfg: TrainConfig, routing: list[dict[str, Any]], resumed: bool) -> None:
        """Write config.yaml, routing.json and the record; start metrics.jsonl and the W&B run."""
        config = self.record.config
        if self.state.wandb_id is None:  # a fresh start (a resume brings its own id from the checkpoint)
            self.state.wandb_id = new_wandb_id(self.record.run_id)
        self.record.wandb_id = self.state.wandb_id
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = OmegaConf.to_yaml(cfg, resolve=True)
            write_atomic(self.run_dir / "config.yaml", lambda fh: fh.write(text))
            write_json_atomic(self.run_dir / "routing.json", routing)
        self._write()
        self.metrics = MetricsLog(self.run_dir, self.is_main, resume_step=self.state.step if resumed else None)
        self.mirror = WandbMirror(
            run_cfg.wandb, run_id=self.record.run_id, run_dir=self.run_dir, wandb_id=self.state.wandb_id, config=config,
            group=run_cfg.sweep_name,
            tags=[str(run_cfg.model.family), run_cfg.model.size, str(self.record.optimizer), budget_label(config["budget"])],
            enabled=self.is_main,
        )
        self.progress = run_cfg.progress and self.is_main

    # ----- while training -----
    def evaluated(self, step: int, val_loss: float) -> None:
        """An evaluation outside a log step (the initial model's, ``eval.at_start``)."""
        row = {"step": step, "tokens": self.plan.tokens_at(step), "val_loss": val_loss}
        self.metrics.write(row)
        self.mirror.log(row, step=step)
        self._write()

    def log(self, out: Any, val_loss: float | None, tokens_per_s: float, lr: dict[str, float]) -> None:
        """One line of metrics.jsonl (docs/run_record.md) after the step ``out`` (a StepOutput)."""
        step = self.state.step
        row = {
            "step": step,
            "tokens": self.plan.tokens_at(step),
            "train_loss": out.loss,
            "val_loss": val_loss,
            "lr_factor": out.lr_factor,
            "lr": lr,
            "grad_norm": out.grad_norm,
            "tokens_per_s": tokens_per_s,
            "step_s": out.step_s,
            "fwd_bwd_s": out.fwd_bwd_s,
            "optimizer_step_s": out.optimizer_step_s,
            "data_wait_s": out.data_wait_s,
            "mfu": mfu(tokens_per_s, self.record.flops_per_token, self.peak_flops),
            "wall_time_s": self.state.wall_time_s,
        }
        self.metrics.write(row)
        self.mirror.log(row, step=step)
        if self.progress:
            remaining = (self.plan.total_steps - step) * self.plan.global_batch_tokens
            print_progress(progress_line(row, self.plan.total_steps, remaining / tokens_per_s if tokens_per_s else math.inf))
        self._write()

    # ----- endings -----
    def done(self, final_val_loss: float, step_cost: dict[str, Any]) -> None:
        record = self.record
        record.status, record.reason, record.final_val_loss = records.DONE, None, final_val_loss
        record.step_cost = step_cost
        record.step_cost_ratio = step_cost_ratio(step_cost["fwd_bwd_s"], step_cost["optimizer_step_s"],
                                                 step_cost["adamw_step_s"])
        self._write()
        # The record's fit fields go to the W&B summary too, so `optlaw fit --wandb-runs` can fit
        # runs whose run.json files are gone (e.g. scratch space wiped after a sweep).
        self.mirror.summary(record.fit_fields())
        if self.is_main:
            floor = record.entropy_floor_nats
            floor_text = f" (entropy floor {floor:.4f})" if floor is not None else ""
            print(f"{record.run_id}: done, final val loss {final_val_loss:.4f}{floor_text} -> {self.run_dir}", flush=True)

    def diverged(self, reason: str) -> None:
        if self.is_main:
            print(f"{self.record.run_id}: diverged: {reason}", flush=True)
        self.record.status, self.record.reason, self.record.final_val_loss = records.DIVERGED, reason, None
        self._write()
        self.mirror.summary(self.record.fit_fields())

    def preempted(self, reason: str) -> None:
        """Checkpoint written (or not, on a second Ctrl-C), the run leaves: the record stays ``running`` (resumable), saying why."""
        self.record.status, self.record.reason = records.RUNNING, reason
        self._write_if_possible()

    def failed(self, exc: BaseException, reason: str | None = None) -> None:
        self.record.status = records.FAILED
        self.record.reason = (reason or f"{type(exc).__name__}: {exc}").splitlines()[0][:500]
        self._write_if_possible()

    def close(self, exit_code: int) -> None:
        try:
            if self.metrics is not None:
                self.metrics.close()
        except OSError as exc:  # the disk that failed the run may fail the last flush too
            print(f"warning: could not finish {self.metrics.path}: {exc}", flush=True)
        if self.mirror is not None:
            self.mirror.finish(exit_code=exit_code)

    # ----- the record -----
    def _write_if_possible(self) -> None:
        """An ending's record write, on its way out: a disk that refuses it is a warning, not a second error."""
        try:
            self._write()
        except OSError as exc:
            if self.is_main:
                print(f"warning: could not write {self.run_dir / records.RECORD_NAME} ({exc.strerror or exc}); "
                      f"it still says {self.record.status} as of its last write", flush=True)

    def _write(self) -> None:
        """Bring the record's progress fields up to the loop state, then write it (rank 0)."""
        state, plan, record = self.state, self.plan, self.record
        n = state.timed_steps
        tokens = plan.tokens_at(state.step)
        record.steps_done = state.step
        record.tokens_trained = tokens
        record.flops = float(record.flops_per_token) * tokens
        record.evals = list(state.evals)
        record.wall_time_s = state.wall_time_s
        record.mean_fwd_bwd_s = state.fwd_bwd_s / n if n else None
        record.mean_optimizer_step_s = state.optimizer_step_s / n if n else None
        record.mean_data_wait_s = state.data_wait_s / n if n else None
        record.tokens_per_s = n * plan.global_batch_tokens / state.train_time_s if n and state.train_time_s > 0 else None
        record.branch = state.branch
        if self.is_main:
            record.updated_at = now()
            records.write_record(self.run_dir, record)
