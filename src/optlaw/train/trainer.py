"""Train one LLM grid point: build the parts, run the loop, keep the record current.

The loop reads top to bottom like nanoGPT's: for each step, set the LR from the
schedule, forward and backward over the micro-batches, clip, optimizer step,
log, evaluate, checkpoint. Builders (model, data, optimizer) come from their
stages; distributed set-up, checkpoints, metrics and W&B live in sibling modules.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from optlaw import records
from optlaw.config import to_plain, validate
from optlaw.config.train import Precision, TrainConfig
from optlaw.errors import ConfigError, UserError
from optlaw.optim.cost import amortization_steps, reference_adamw
from optlaw.train import checkpoint as ckpt
from optlaw.train.budget import BudgetPlan, plan_budget
from optlaw.train.distributed import (DistInfo, all_reduce_mean, all_reduce_sum, any_rank, from_main, init_distributed,
                                      shutdown_distributed)
from optlaw.train.identity import budget_label, run_id as make_point_id
from optlaw.train.metrics import MetricsLog, mfu, peak_bf16_flops, print_progress, progress_line
from optlaw.train.record import RunRecord, initial_fields
from optlaw.train.schedule import check_schedule, lr_factor
from optlaw.train.signals import Preempted, PreemptionFlag
from optlaw.train.wandb_mirror import WandbMirror


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

    def to_plain(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_plain(cls, values: dict[str, Any]) -> LoopState:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def resolve_run_dir(run_cfg: TrainConfig, point_id: str) -> Path:
    return Path(run_cfg.run_dir) if run_cfg.run_dir else Path("runs") / point_id


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the grid point ``cfg`` (the composed `train` config); return its final run record."""
    run_cfg: TrainConfig = validate(cfg)  # every config rule, before anything is built
    info = init_distributed(run_cfg.device.value, run_cfg.cpu_threads)
    try:
        return _train(cfg, run_cfg, info)
    finally:
        shutdown_distributed()


def _train(cfg: DictConfig, run_cfg: TrainConfig, info: DistInfo) -> dict[str, Any]:
    from optlaw.data import build_corpus, check_vocab_fits
    from optlaw.models import build_model, model_stats

    # --- everything that can reject the input, before any compute ---
    config = to_plain(cfg)
    stats = model_stats(run_cfg.model)
    plan = plan_budget(run_cfg, stats.n_total, stats.n_non_embedding, info.world_size)
    point_id = make_point_id(config)
    run_dir = resolve_run_dir(run_cfg, point_id)
    existing = records.read_record(run_dir)
    if existing and existing.get("status") in records.FINISHED:
        if info.is_main:
            print(f"{point_id}: already {existing['status']} in {run_dir}; nothing to do", flush=True)
        return existing
    corpus = build_corpus(run_cfg.data)
    check_vocab_fits(corpus.vocab_size, run_cfg.model.vocab_size)
    branch_source = None
    if run_cfg.init.from_checkpoint:
        branch_source = ckpt.load_branch_source(run_cfg.init.from_checkpoint)
        _check_branch_compatible(run_cfg, config, branch_source, plan, stats)

    # --- build ---
    torch.manual_seed(run_cfg.seed)
    device = info.device
    raw_model = build_model(run_cfg.model).to(device)
    from optlaw.optim import build_optimizer

    bundle = build_optimizer(raw_model, run_cfg.optimizer, run_cfg.model)
    # Values measured on each rank's machine (Muon's Newton-Schulz dtype) must agree, or ranks step apart.
    bundle.adopt_choices(from_main(bundle.choices(), info))

    state = LoopState()
    saved = ckpt.load_latest(run_dir, map_location=device)
    if saved is not None:
        _restore(saved, raw_model, bundle, state)
        if info.is_main:
            print(f"{point_id}: resuming from step {state.step} ({plan.tokens_at(state.step)} tokens)", flush=True)
    elif branch_source is not None:
        _restore(branch_source, raw_model, bundle, state)
        parent = branch_source["run_id"]
        state.branch = {
            "parent_run_id": parent,
            "from_step": state.step,
            "from_tokens": plan.tokens_at(state.step),
            "from_checkpoint": str(run_cfg.init.from_checkpoint),
        }
        # Evaluations up to the branch step are of this very trajectory and stay; the
        # parent's timings and start time describe the parent's process, not this run.
        state.evals = [e for e in state.evals if e["step"] <= state.step]
        state.started_at = None
        state.wall_time_s = state.train_time_s = 0.0
        state.timed_steps = 0
        state.fwd_bwd_s = state.optimizer_step_s = state.data_wait_s = 0.0
        if info.is_main:
            print(f"{point_id}: branching from {parent} at step {state.step}", flush=True)
    del branch_source

    model: torch.nn.Module = raw_model
    if info.is_distributed:
        model = torch.nn.parallel.DistributedDataParallel(raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    if run_cfg.compile:
        if device.type == "cuda":
            model = torch.compile(model)
        elif info.is_main:
            print("note: compile=true is ignored on CPU (torch.compile is used on CUDA only)", flush=True)

    record = RunRecord(
        run_dir,
        info.is_main,
        initial_fields(
            run_id=point_id,
            config=config,
            stats=stats,
            plan=plan,
            entropy_floor_nats=getattr(corpus, "entropy_floor_nats", None),
            hyperparameters=_plain_json(getattr(bundle, "resolved", {})),
            choices=_plain_json(bundle.choices()),
            branch=state.branch,
            started_at=state.started_at,
        ),
    )
    state.started_at = record.data["started_at"]
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        routing = _plain_json(list(bundle.routing_table))
        records.write_json_atomic(run_dir / "routing.json", routing)
        _print_run_header(point_id, run_dir, plan, stats, routing)
    _refresh_record(record, state, plan, stats)

    metrics, mirror = None, None
    try:
        metrics = MetricsLog(run_dir, info.is_main, resume_step=state.step if (saved or state.branch) else None)
        mirror = WandbMirror(
            run_cfg.wandb,
            run_id=point_id,
            run_dir=run_dir,
            config=config,
            group=run_cfg.sweep_name,
            tags=[str(run_cfg.model.family), run_cfg.model.size, run_cfg.optimizer.name, budget_label(config["budget"])],
            enabled=info.is_main,
        )
        session = _Session(run_cfg, info, plan, stats, model, raw_model, bundle, corpus, run_dir, point_id, record, metrics, mirror, state)
        with PreemptionFlag() as preemption:
            session.run(preemption)
    except Preempted as exc:
        record.update(status=records.RUNNING, reason=str(exc))
        if mirror is not None:
            mirror.finish(exit_code=0)
        raise
    except BaseException as exc:
        record.update(status=records.FAILED, reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
        if mirror is not None:
            mirror.finish(exit_code=1)
        raise
    finally:
        if metrics is not None:
            metrics.close()
    mirror.finish(exit_code=0)
    return record.data


class _Session:
    """One process's share of one run: the loop and the things it touches."""

    def __init__(self, cfg: TrainConfig, info, plan, stats, model, raw_model, bundle, corpus, run_dir, point_id, record, metrics, mirror, state):
        self.cfg, self.info, self.plan, self.stats = cfg, info, plan, stats
        self.model, self.raw_model, self.bundle, self.corpus = model, raw_model, bundle, corpus
        self.run_dir, self.point_id, self.record = run_dir, point_id, record
        self.metrics, self.mirror, self.state = metrics, mirror, state
        self.device = info.device
        self.grad_clip = cfg.train.grad_clip
        self.max_loss_ratio = cfg.divergence.max_loss_ratio or math.inf  # 0 = never diverged by ratio
        self.log_every = max(1, cfg.log.every_steps)
        self.ckpt_every = cfg.checkpoint.every_steps
        self.ckpt_keep = max(1, cfg.checkpoint.keep)
        self.keep_at_tokens = sorted(int(t) for t in cfg.checkpoint.keep_at_tokens)
        self.progress = cfg.progress and info.is_main
        self.autocast = _autocast_context(cfg.precision, self.device)
        self.peak_flops = peak_bf16_flops(self.device, cfg.hardware.peak_bf16_tflops)
        self.params = [p for p in raw_model.parameters() if p.requires_grad]
        self.steps_this_session = 0

    # ----- the loop -----
    def run(self, preemption: PreemptionFlag) -> None:
        plan, state = self.plan, self.state
        session_start = time.perf_counter()
        wall_at_start = state.wall_time_s
        window_tokens, window_time = 0, 0.0
        if 0 in plan.eval_steps and state.step == 0 and not state.evals:
            self._evaluate_and_log(0)
        while state.step < plan.total_steps:
            step = state.step
            out = self.train_step(step)
            state.step = step + 1
            state.wall_time_s = wall_at_start + time.perf_counter() - session_start
            window_tokens += plan.global_batch_tokens
            window_time += out["step_s"]
            if not math.isfinite(out["loss"]):
                return self._diverged(f"non-finite train loss ({out['loss']}) at step {state.step}")
            state.running_min_loss = min(state.running_min_loss, out["loss"])
            if state.step > plan.warmup_steps and out["loss"] > self.max_loss_ratio * state.running_min_loss:
                return self._diverged(
                    f"train loss {out['loss']:.4g} at step {state.step} exceeds divergence.max_loss_ratio="
                    f"{self.max_loss_ratio:g} x running minimum {state.running_min_loss:.4g}"
                )
            val_loss = self._evaluate(state.step) if state.step in plan.eval_steps else None
            if state.step % self.log_every == 0 or val_loss is not None or state.step == plan.total_steps:
                tokens_per_s = window_tokens / window_time if window_time > 0 else 0.0
                self._log(out, val_loss, tokens_per_s)
                window_tokens, window_time = 0, 0.0
            self._maybe_checkpoint(preemption)
        self._finish()

    def train_step(self, step: int) -> dict[str, Any]:
        """One optimizer update: schedule, forward/backward over the micro-batches, clip, step."""
        plan, info = self.plan, self.info
        factor = lr_factor(step, plan, self.cfg.schedule)
        for group in self.bundle.param_groups:
            group["lr"] = group["base_lr"] * factor
        t_start = time.perf_counter()
        data_wait = 0.0
        loss_sum = torch.zeros((), device=self.device)
        accum = plan.grad_accum_steps
        for micro in range(accum):
            t_data = time.perf_counter()
            batch = self.corpus.train_batch(
                self.cfg.seed, step, micro, info.rank, info.world_size, plan.micro_batch_size, plan.seq_len
            ).to(self.device, non_blocking=True)
            data_wait += time.perf_counter() - t_data
            # DDP all-reduces gradients only on the last micro-batch of the step.
            sync = self.model.no_sync() if info.is_distributed and micro < accum - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast:
                    loss = self._loss(self.model, batch)
                (loss / accum).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip if self.grad_clip > 0 else math.inf)
        self._sync()
        t_grads = time.perf_counter()
        self.bundle.step()
        self.bundle.zero_grad(set_to_none=True)
        self._sync()
        t_end = time.perf_counter()
        loss_mean = all_reduce_mean(loss_sum / accum, info)
        out = {
            "loss": float(loss_mean.item()),
            "grad_norm": float(grad_norm.item()),
            "lr_factor": factor,
            "fwd_bwd_s": t_grads - t_start - data_wait,
            "optimizer_step_s": t_end - t_grads,
            "data_wait_s": data_wait,
            "step_s": t_end - t_start,
        }
        # The first step of each process pays one-off costs (allocations, lazy init): keep it out of the means.
        if self.steps_this_session > 0:
            s = self.state
            s.timed_steps += 1
            s.train_time_s += out["step_s"]
            s.fwd_bwd_s += out["fwd_bwd_s"]
            s.optimizer_step_s += out["optimizer_step_s"]
            s.data_wait_s += out["data_wait_s"]
        self.steps_this_session += 1
        return out

    @staticmethod
    def _loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = model(inputs, use_cache=False).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))

    def _sync(self) -> None:
        # Honest phase timings on CUDA need a sync; on CPU every op is already done.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ----- evaluation -----
    @torch.no_grad()
    def _evaluate(self, step: int) -> float:
        """Mean next-token loss (nats) on the fixed validation split; ranks share the batches."""
        self.raw_model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        batch_size = self.cfg.eval.micro_batch_size or self.plan.micro_batch_size
        for index, batch in enumerate(self.corpus.val_batches(self.cfg.eval.tokens, batch_size, self.plan.seq_len)):
            if index % self.info.world_size != self.info.rank:
                continue
            batch = batch.to(self.device)
            with self.autocast:
                logits = self.raw_model(batch[:, :-1], use_cache=False).logits
            targets = batch[:, 1:]
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
            total[0] += loss.double()
            total[1] += targets.numel()
        all_reduce_sum(total, self.info)
        self.raw_model.train()
        if total[1] == 0:
            raise ConfigError(f"eval.tokens={self.cfg.eval.tokens} gives no validation batch; raise it to at least one batch")
        val_loss = float(total[0] / total[1])
        self.state.evals = [e for e in self.state.evals if e["step"] != step]
        self.state.evals.append({"step": step, "tokens": self.plan.tokens_at(step), "val_loss": val_loss})
        return val_loss

    def _evaluate_and_log(self, step: int) -> None:
        val_loss = self._evaluate(step)
        row = {"step": step, "tokens": 0, "val_loss": val_loss}
        self.metrics.write(row)
        self.mirror.log(row, step=step)
        _refresh_record(self.record, self.state, self.plan, self.stats)

    # ----- logging -----
    def _log(self, out: dict[str, Any], val_loss: float | None, tokens_per_s: float) -> None:
        step = self.state.step
        row = {
            "step": step,
            "tokens": self.plan.tokens_at(step),
            "train_loss": out["loss"],
            "val_loss": val_loss,
            "lr_factor": out["lr_factor"],
            "lr": {_group_name(g, i): g["lr"] for i, g in enumerate(self.bundle.param_groups)},
            "grad_norm": out["grad_norm"],
            "tokens_per_s": tokens_per_s,
            "step_s": out["step_s"],
            "fwd_bwd_s": out["fwd_bwd_s"],
            "optimizer_step_s": out["optimizer_step_s"],
            "data_wait_s": out["data_wait_s"],
            "mfu": mfu(tokens_per_s, self.stats.flops_per_token, self.peak_flops),
            "wall_time_s": self.state.wall_time_s,
        }
        self.metrics.write(row)
        flat = dict(row)
        flat.update({f"lr/{k}": v for k, v in flat.pop("lr").items()})
        self.mirror.log(flat, step=step)
        if self.progress:
            remaining = (self.plan.total_steps - step) * self.plan.global_batch_tokens
            print_progress(progress_line(row, self.plan.total_steps, remaining / tokens_per_s if tokens_per_s else math.inf))
        _refresh_record(self.record, self.state, self.plan, self.stats)

    # ----- checkpoints -----
    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "run_id": self.point_id,
            "config": ckpt.encode_config(self.record.data["config"]),
            "step": self.state.step,
            "tokens": self.plan.tokens_at(self.state.step),
            "model": self.raw_model.state_dict(),
            "optimizer": self.bundle.state_dict(),
            "rng": ckpt.rng_state(),
            "loop": self.state.to_plain(),
        }

    def _maybe_checkpoint(self, preemption: PreemptionFlag) -> None:
        step = self.state.step
        tokens, previous_tokens = self.plan.tokens_at(step), self.plan.tokens_at(step - 1)
        keeps = [t for t in self.keep_at_tokens if previous_tokens < t <= tokens]
        periodic = self.ckpt_every > 0 and step % self.ckpt_every == 0
        stop = any_rank(preemption.requested, self.info)
        if (keeps or periodic or stop) and self.info.is_main:
            state = self._checkpoint_state()
            for keep_tokens in keeps:
                ckpt.save_atomic(state, ckpt.keep_path(self.run_dir, keep_tokens))
            if periodic or stop or step == self.plan.total_steps:
                ckpt.save_atomic(state, ckpt.step_path(self.run_dir, step))
                ckpt.rotate(self.run_dir, self.ckpt_keep)
        if stop:
            _refresh_record(self.record, self.state, self.plan, self.stats)
            raise Preempted(preemption.signal_name or "a signal from another rank", step)

    # ----- endings -----
    def _diverged(self, reason: str) -> None:
        if self.info.is_main:
            print(f"{self.point_id}: diverged: {reason}", flush=True)
        _refresh_record(self.record, self.state, self.plan, self.stats, write=False)
        self.record.update(status=records.DIVERGED, reason=reason, final_val_loss=None)
        self.mirror.summary({k: self.record.data.get(k) for k in records.FIT_FIELDS} | {"reason": reason})

    def _finish(self) -> None:
        plan, state = self.plan, self.state
        final = [e for e in state.evals if e["step"] == plan.total_steps]
        final_val_loss = final[-1]["val_loss"] if final else self._evaluate(plan.total_steps)
        if self.info.is_main and not ckpt.step_path(self.run_dir, plan.total_steps).exists():
            ckpt.save_atomic(self._checkpoint_state(), ckpt.step_path(self.run_dir, plan.total_steps))
            ckpt.rotate(self.run_dir, self.ckpt_keep)
        step_cost = self._measure_step_cost()
        _refresh_record(self.record, state, plan, self.stats, write=False)
        ratio = None
        if None not in (step_cost["fwd_bwd_s"], step_cost["optimizer_step_s"], step_cost["adamw_step_s"]):
            ratio = (step_cost["fwd_bwd_s"] + step_cost["optimizer_step_s"]) / (step_cost["fwd_bwd_s"] + step_cost["adamw_step_s"])
        self.record.update(
            status=records.DONE,
            reason=None,
            final_val_loss=final_val_loss,
            step_cost=step_cost,
            step_cost_ratio=ratio,
        )
        # The record's fit fields go to the W&B summary too, so `optlaw fit --wandb-runs` can fit
        # runs whose run.json files are gone (e.g. scratch space wiped after a sweep).
        self.mirror.summary({k: self.record.data.get(k) for k in records.FIT_FIELDS})
        if self.info.is_main:
            floor = self.record.data.get("entropy_floor_nats")
            floor_text = f" (entropy floor {floor:.4f})" if floor is not None else ""
            print(f"{self.point_id}: done, final val loss {final_val_loss:.4f}{floor_text} -> {self.run_dir}", flush=True)

    def _measure_step_cost(self) -> dict[str, Any]:
        """This optimizer's step time next to an AdamW step on the same parameters and gradients.

        Measured side by side at the end of the run (interleaved repeats), because
        timings taken minutes apart on a shared machine are not comparable.
        """
        repeats = self.cfg.step_cost.repeats
        mean_fwd_bwd = self.state.fwd_bwd_s / self.state.timed_steps if self.state.timed_steps else None
        if repeats <= 0:
            return {"fwd_bwd_s": mean_fwd_bwd, "optimizer_step_s": None, "adamw_step_s": None, "repeats": 0}
        batch = self.corpus.train_batch(self.cfg.seed, self.plan.total_steps, 0, self.info.rank,
                                        self.info.world_size, self.plan.micro_batch_size, self.plan.seq_len).to(self.device)
        with self.autocast:
            loss = self._loss(self.raw_model, batch)
        loss.backward()
        reference = copy.deepcopy(self.raw_model)
        for p, q in zip(self.raw_model.parameters(), reference.parameters()):
            q.grad = None if p.grad is None else p.grad.detach().clone()
        # The reference is AdamW as optlaw builds it (foreach on CPU, fused on CUDA), and each
        # timing window spans one preconditioner refresh (Shampoo/SOAP recompute their bases
        # every k steps), so the amortised cost is charged, not the cheap in-between step.
        adamw = reference_adamw(list(reference.parameters()))
        adamw.step()  # allocate AdamW's state outside the timed repeats
        window = amortization_steps(self.bundle.resolved)
        own_s, adamw_s = [], []
        for _ in range(repeats):
            self._sync(); t0 = time.perf_counter()
            for _ in range(window):
                self.bundle.step()
            self._sync(); t1 = time.perf_counter()
            for _ in range(window):
                adamw.step()
            self._sync(); t2 = time.perf_counter()
            own_s.append((t1 - t0) / window)
            adamw_s.append((t2 - t1) / window)
        self.bundle.zero_grad(set_to_none=True)
        # Medians: a single hiccup from a neighbour process should not set the cost.
        own_s.sort(); adamw_s.sort()
        return {
            "fwd_bwd_s": mean_fwd_bwd,
            "optimizer_step_s": own_s[len(own_s) // 2],
            "adamw_step_s": adamw_s[len(adamw_s) // 2],
            "repeats": repeats,
            "window_steps": window,
        }


def _refresh_record(record: RunRecord, state: LoopState, plan: BudgetPlan, stats: Any, write: bool = True) -> None:
    n = state.timed_steps
    tokens = plan.tokens_at(state.step)
    record.update(
        write=write,
        steps_done=state.step,
        tokens_trained=tokens,
        flops=float(stats.flops_per_token) * tokens,
        evals=list(state.evals),
        wall_time_s=state.wall_time_s,
        mean_fwd_bwd_s=state.fwd_bwd_s / n if n else None,
        mean_optimizer_step_s=state.optimizer_step_s / n if n else None,
        mean_data_wait_s=state.data_wait_s / n if n else None,
        tokens_per_s=n * plan.global_batch_tokens / state.train_time_s if n and state.train_time_s > 0 else None,
        branch=state.branch,
    )


def _restore(saved: dict[str, Any], raw_model: torch.nn.Module, bundle: Any, state: LoopState) -> None:
    raw_model.load_state_dict(saved["model"])
    bundle.load_state_dict(saved["optimizer"])
    ckpt.restore_rng_state(saved["rng"])
    restored = LoopState.from_plain(saved["loop"])
    state.__dict__.update(restored.__dict__)


def _check_branch_compatible(cfg: TrainConfig, config: dict, source: dict[str, Any], plan: BudgetPlan, stats: Any) -> None:
    """A branch must be bitwise the run it stands for: same point up to the budget, same LR up to the branch step."""
    parent_config = ckpt.decode_config(source["config"])
    from_step = int(source["step"])
    key = f"init.from_checkpoint={cfg.init.from_checkpoint}"
    for section in ("model", "optimizer", "data", "seed", "task", "batch", "train"):
        mine, theirs = records.semantic_config(config).get(section), records.semantic_config(parent_config).get(section)
        if mine != theirs:
            raise UserError(f"{key} comes from a run with a different '{section}' config; a branch must match its parent except for the budget")
    if from_step > plan.total_steps:
        raise UserError(f"{key} is at step {from_step}, beyond this run's {plan.total_steps} steps; branch from an earlier checkpoint")
    parent_cfg = OmegaConf.create(parent_config)
    parent_plan = plan_budget(parent_cfg, stats.n_total, stats.n_non_embedding, plan.world_size)
    parent_schedule = check_schedule(parent_cfg.schedule)
    for step in range(from_step):
        if not math.isclose(lr_factor(step, plan, cfg.schedule), lr_factor(step, parent_plan, parent_schedule), rel_tol=0, abs_tol=0):
            raise UserError(
                f"{key}: the parent's LR schedule differs from this run's at step {step} (< branch step {from_step}); "
                "use schedule.name=wsd with schedule.warmup_tokens set and branch at or before the decay start"
            )


def _autocast_context(precision: Precision, device: torch.device):
    if precision == Precision.bf16 or (precision == Precision.auto and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _group_name(group: dict[str, Any], index: int) -> str:
    return str(group.get("name") or group.get("group") or f"group{index}")


def _plain_json(obj: Any) -> Any:
    """Make the bundle's tables JSON-safe (tuples, torch sizes, numbers)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else list(o) if isinstance(o, (tuple, torch.Size)) else str(o)))


def _print_run_header(point_id: str, run_dir: Path, plan: BudgetPlan, stats: Any, routing: list[dict[str, Any]]) -> None:
    print(
        f"{point_id}: N_total={stats.n_total:,} N_non_embedding={stats.n_non_embedding:,} basis={plan.param_basis} "
        f"D={plan.tokens_trained:,} tokens in {plan.total_steps} steps of {plan.global_batch_tokens} "
        f"(micro-batch {plan.micro_batch_size} x {plan.grad_accum_steps} accumulation x {plan.world_size} ranks), "
        f"warmup {plan.warmup_steps} steps -> {run_dir}",
        flush=True,
    )
    columns = ("param", "shape", "group", "optimizer", "lr", "weight_decay")
    rows = [[_cell(r.get(c)) for c in columns] for r in routing]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]
    print("routing:", flush=True)
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)
