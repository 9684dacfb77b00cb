"""The training loop of one LLM grid point, top to bottom like nanoGPT's.

``TrainLoop.run`` is the whole story: per step, set the LR from the schedule, forward
and backward over the micro-batches, clip, optimizer step; then the divergence check,
evaluation, a metrics line, a checkpoint when the policy says so. The parts it works with
arrive built, in one ``TrainContext`` (optlaw.train.trainer builds it); every file it
writes besides checkpoints goes through the context's ``RunOutputs``.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from optlaw.config.train import Precision, TrainConfig
from optlaw.errors import ConfigError
from optlaw.optim.bundle import OptimizerBundle
from optlaw.optim.cost import measure_step_cost, synchronize
from optlaw.train import checkpoint as ckpt
from optlaw.train.budget import BudgetPlan
from optlaw.train.distributed import DistInfo, all_reduce_mean, all_reduce_sum, any_rank
from optlaw.train.outputs import RunOutputs
from optlaw.train.schedule import lr_factor
from optlaw.train.signals import Preempted, PreemptionFlag


@dataclass
class LoopState:
    """What a checkpoint must carry besides weights and optimizer state."""

    step: int = 0
    running_min_loss: float = math.inf
    evals: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    train_time_s: float = 0.0          # sum of step times (excludes evaluation and checkpoint writes)
    timed_steps: int = 0
    fwd_bwd_s: float = 0.0
    optimizer_step_s: float = 0.0
    data_wait_s: float = 0.0
    started_at: str | None = None
    branch: dict[str, Any] | None = None
    wandb_id: str | None = None        # this run directory's W&B run (train/wandb_mirror.py)

    def to_plain(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_plain(cls, values: dict[str, Any]) -> LoopState:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, kw_only=True)
class TrainContext:
    """Everything one process's loop works with, built before it starts."""

    cfg: TrainConfig
    info: DistInfo
    plan: BudgetPlan
    model: torch.nn.Module        # what the forward pass runs through (DDP-wrapped and/or compiled)
    raw_model: torch.nn.Module    # the module itself: evaluation, checkpoints, step cost
    bundle: OptimizerBundle
    corpus: Any                   # optlaw.data.Corpus
    state: LoopState
    outputs: RunOutputs
    checkpoints: ckpt.CheckpointPolicy
    run_dir: Path
    run_id: str
    config: dict[str, Any]        # the resolved config as plain containers (it rides in checkpoints)


@dataclass(frozen=True)
class StepOutput:
    loss: float                   # mean over the global batch
    grad_norm: float              # before clipping
    lr_factor: float
    fwd_bwd_s: float
    optimizer_step_s: float
    data_wait_s: float
    step_s: float


class TrainLoop:
    """One process's share of one run."""

    def __init__(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        self.outputs = ctx.outputs
        self.max_loss_ratio = ctx.cfg.divergence.max_loss_ratio or math.inf  # 0 = never diverged by ratio
        self.log_every = max(1, ctx.cfg.log.every_steps)
        self.autocast = autocast_context(ctx.cfg.precision, ctx.info.device)
        self.params = [p for p in ctx.raw_model.parameters() if p.requires_grad]
        self.steps_this_session = 0

    def run(self, preemption: PreemptionFlag) -> None:
        plan, state = self.ctx.plan, self.ctx.state
        session_start, wall_at_start = time.perf_counter(), state.wall_time_s
        window_tokens, window_time = 0, 0.0   # since the last metrics line: its tokens/s
        if 0 in plan.eval_steps and state.step == 0 and not state.evals:
            self.outputs.evaluated(0, self.evaluate(0))
        while state.step < plan.total_steps:
            out = self.train_step(state.step)
            state.step += 1
            state.wall_time_s = wall_at_start + time.perf_counter() - session_start
            window_tokens, window_time = window_tokens + plan.global_batch_tokens, window_time + out.step_s
            state.running_min_loss = min(state.running_min_loss, out.loss)  # a NaN leaves it as it was
            diverged = self.divergence(out.loss)
            if diverged:
                return self.outputs.diverged(diverged)
            val_loss = self.evaluate(state.step) if state.step in plan.eval_steps else None
            if state.step % self.log_every == 0 or val_loss is not None or state.step == plan.total_steps:
                tokens_per_s = window_tokens / window_time if window_time > 0 else 0.0
                self.outputs.log(out, val_loss, tokens_per_s, self.learning_rates())
                window_tokens, window_time = 0, 0.0
            self.checkpoint(preemption)
        self.finish()

    def train_step(self, step: int) -> StepOutput:
        """One optimizer update: schedule, forward/backward over the micro-batches, clip, step."""
        ctx, plan, info = self.ctx, self.ctx.plan, self.ctx.info
        factor = lr_factor(step, plan, ctx.cfg.schedule)
        for group in ctx.bundle.param_groups:
            group["lr"] = group["base_lr"] * factor
        t_start = time.perf_counter()
        data_wait = 0.0
        loss_sum = torch.zeros((), device=info.device)
        accum = plan.grad_accum_steps
        for micro in range(accum):
            t_data = time.perf_counter()
            batch = ctx.corpus.train_batch(
                ctx.cfg.seed, step, micro, info.rank, info.world_size, plan.micro_batch_size, plan.seq_len
            ).to(info.device, non_blocking=True)
            data_wait += time.perf_counter() - t_data
            # DDP all-reduces gradients only on the last micro-batch of the step.
            sync = ctx.model.no_sync() if info.is_distributed and micro < accum - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast:
                    loss = next_token_loss(ctx.model, batch)
                (loss / accum).backward()
            loss_sum += loss.detach()
        clip = ctx.cfg.train.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else math.inf)
        synchronize(info.device)
        t_grads = time.perf_counter()
        ctx.bundle.step()
        ctx.bundle.zero_grad(set_to_none=True)
        synchronize(info.device)
        t_end = time.perf_counter()
        out = StepOutput(
            loss=float(all_reduce_mean(loss_sum / accum, info).item()), grad_norm=float(grad_norm.item()),
            lr_factor=factor, fwd_bwd_s=t_grads - t_start - data_wait, optimizer_step_s=t_end - t_grads,
            data_wait_s=data_wait, step_s=t_end - t_start,
        )
        self.count_time(out)
        return out

    def count_time(self, out: StepOutput) -> None:
        # The first step of each process pays one-off costs (allocations, lazy init): keep it out of the means.
        if self.steps_this_session > 0:
            s = self.ctx.state
            s.timed_steps += 1
            s.train_time_s += out.step_s
            s.fwd_bwd_s += out.fwd_bwd_s
            s.optimizer_step_s += out.optimizer_step_s
            s.data_wait_s += out.data_wait_s
        self.steps_this_session += 1

    def divergence(self, loss: float) -> str | None:
        """Why the run has diverged after this step's ``loss``, or None."""
        state = self.ctx.state
        if not math.isfinite(loss):
            return f"non-finite train loss ({loss}) at step {state.step}"
        if state.step > self.ctx.plan.warmup_steps and loss > self.max_loss_ratio * state.running_min_loss:
            return (f"train loss {loss:.4g} at step {state.step} exceeds divergence.max_loss_ratio="
                    f"{self.max_loss_ratio:g} x running minimum {state.running_min_loss:.4g}")
        return None

    def learning_rates(self) -> dict[str, float]:
        return {str(g.get("name") or f"group{i}"): g["lr"] for i, g in enumerate(self.ctx.bundle.param_groups)}

    @torch.no_grad()
    def evaluate(self, step: int) -> float:
        """Mean next-token loss (nats) on the fixed validation split; ranks share the batches. Kept in the state's evals."""
        ctx, info = self.ctx, self.ctx.info
        ctx.raw_model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=info.device)
        batch_size = ctx.cfg.eval.micro_batch_size or ctx.plan.micro_batch_size
        for index, batch in enumerate(ctx.corpus.val_batches(ctx.cfg.eval.tokens, batch_size, ctx.plan.seq_len)):
            if index % info.world_size != info.rank:
                continue
            batch = batch.to(info.device)
            with self.autocast:
                logits = ctx.raw_model(batch[:, :-1], use_cache=False).logits
            targets = batch[:, 1:]
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
            total[0] += loss.double()
            total[1] += targets.numel()
        all_reduce_sum(total, info)
        ctx.raw_model.train()
        if total[1] == 0:
            raise ConfigError(f"eval.tokens={ctx.cfg.eval.tokens} gives no validation batch; raise it to at least one batch")
        val_loss = float(total[0] / total[1])
        ctx.state.evals = [e for e in ctx.state.evals if e["step"] != step]
        ctx.state.evals.append({"step": step, "tokens": ctx.plan.tokens_at(step), "val_loss": val_loss})
        return val_loss

    # ----- checkpoints -----
    def checkpoint(self, preemption: PreemptionFlag) -> None:
        """Write what the policy says is due after this step; leave (``Preempted``) when a rank was signalled."""
        ctx, step = self.ctx, self.ctx.state.step
        stop = any_rank(preemption.requested, ctx.info)
        keeps = ctx.checkpoints.keeps_due(ctx.plan.tokens_at(step - 1), ctx.plan.tokens_at(step))
        rotating = ctx.checkpoints.rotating_due(step, ctx.plan.total_steps, stop)
        if ctx.info.is_main and (keeps or rotating):
            ckpt.save(self.checkpoint_state(), ctx.run_dir, keep_tokens=keeps, step=step if rotating else None,
                      keep=ctx.checkpoints.keep)
        if stop:
            raise Preempted(preemption.signal_name or "a signal from another rank", step)

    def checkpoint_state(self) -> dict[str, Any]:
        ctx = self.ctx
        return {
            "format": 1,
            "run_id": ctx.run_id,
            "config": ckpt.encode_config(ctx.config),
            "step": ctx.state.step,
            "tokens": ctx.plan.tokens_at(ctx.state.step),
            "model": ctx.raw_model.state_dict(),
            "optimizer": ctx.bundle.state_dict(),
            "rng": ckpt.rng_state(),
            "loop": ctx.state.to_plain(),
        }

    # ----- the end -----
    def finish(self) -> None:
        ctx, plan, state = self.ctx, self.ctx.plan, self.ctx.state
        final = [e for e in state.evals if e["step"] == plan.total_steps]
        final_val_loss = final[-1]["val_loss"] if final else self.evaluate(plan.total_steps)
        if ctx.info.is_main and not ckpt.step_path(ctx.run_dir, plan.total_steps).exists():
            # The loop writes it after the last step; a run that trained no step here (a branch
            # taken at its parent's last step) still leaves its final checkpoint.
            ckpt.save(self.checkpoint_state(), ctx.run_dir, keep_tokens=[], step=plan.total_steps, keep=ctx.checkpoints.keep)
        self.outputs.done(final_val_loss, self.step_cost())

    def step_cost(self) -> dict[str, Any]:
        """This optimizer's step time next to AdamW's (optlaw.optim.cost), with this run's mean forward+backward.

        The optimizer is timed on gradients of one more batch, after the final checkpoint:
        the measurement steps the run's own optimizer.
        """
        ctx, state = self.ctx, self.ctx.state
        fwd_bwd_s = state.fwd_bwd_s / state.timed_steps if state.timed_steps else None
        repeats = ctx.cfg.step_cost.repeats
        if repeats > 0:
            info, plan = ctx.info, ctx.plan
            batch = ctx.corpus.train_batch(ctx.cfg.seed, plan.total_steps, 0, info.rank, info.world_size,
                                           plan.micro_batch_size, plan.seq_len).to(info.device)
            with self.autocast:
                loss = next_token_loss(ctx.raw_model, batch)
            loss.backward()
        return {"fwd_bwd_s": fwd_bwd_s, **measure_step_cost(ctx.raw_model, ctx.bundle, repeats)}


def next_token_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


def autocast_context(precision: Precision, device: torch.device):
    if precision == Precision.bf16 or (precision == Precision.auto and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
