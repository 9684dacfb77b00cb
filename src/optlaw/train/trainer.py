"""Train one LLM grid point: check the input, build the parts, run the loop.

Everything that can reject the input runs before any compute. Builders (model, data,
optimizer) come from their stages; the loop (optlaw.train.loop) gets the built parts in
one context, and every file a run writes besides checkpoints goes through its
``RunOutputs`` (optlaw.train.outputs).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from optlaw import records
from optlaw.config import to_plain, validate
from optlaw.config.train import TrainConfig
from optlaw.errors import UserError, disk_error
from optlaw.jsonio import plain
from optlaw.machine import machine_key
from optlaw.train import checkpoint as ckpt
from optlaw.train.budget import BudgetPlan, plan_budget
from optlaw.train.cuda import prepare_model
from optlaw.train.distributed import DistInfo, any_rank, from_main, init_distributed, shutdown_distributed
from optlaw.train.fsdp import check_sharding, load_sharded, shard_model, uses_fsdp
from optlaw.train.identity import check_run_dir_owner
from optlaw.train.identity import run_id as make_point_id
from optlaw.train.lock import RunLock
from optlaw.train.loop import LoopState, TrainContext, TrainLoop
from optlaw.train.metrics import peak_bf16_flops
from optlaw.train.outputs import RunOutputs
from optlaw.train.record import new_record
from optlaw.train.schedule import check_schedule, lr_factor
from optlaw.train.signals import Preempted, PreemptionFlag


def resolve_run_dir(run_cfg: TrainConfig, point_id: str) -> Path:
    return Path(run_cfg.run_dir) if run_cfg.run_dir else Path("runs") / point_id


def train(cfg: DictConfig) -> records.LLMRunRecord:
    """Train the grid point ``cfg`` (the composed `train` config); return its final run record."""
    run_cfg: TrainConfig = validate(cfg)  # every config rule, before anything is built
    info = init_distributed(run_cfg.device.value, run_cfg.cpu_threads)
    try:
        return _train(cfg, run_cfg, info)
    finally:
        shutdown_distributed()


def _train(cfg: DictConfig, run_cfg: TrainConfig, info: DistInfo) -> records.LLMRunRecord:
    from optlaw.data import build_corpus
    from optlaw.models import model_stats

    # --- everything that can reject the input, before any compute ---
    config = to_plain(cfg)
    stats = model_stats(run_cfg.model)
    plan = plan_budget(run_cfg, stats.n_total, stats.n_non_embedding, info.world_size)
    point_id = make_point_id(config)
    run_dir = resolve_run_dir(run_cfg, point_id)
    existing = _existing_record(run_dir, point_id, config, info)
    if existing is not None and existing.status in records.FINISHED:
        if info.is_main:
            print(f"{point_id}: already {existing.status} in {run_dir}; nothing to do", flush=True)
        return existing
    check_sharding(run_cfg.perf.sharding, run_cfg.optimizer)
    corpus = build_corpus(run_cfg.data, model_vocab_size=run_cfg.model.vocab_size)  # vocabulary checked before tokenizing
    branch_source = None
    if run_cfg.init.from_checkpoint:
        branch_source = ckpt.load_branch_source(run_cfg.init.from_checkpoint)
        _check_branch_compatible(run_cfg, config, branch_source, plan, stats)
    # Handed over in a list the callee empties: a parent checkpoint must not stay in memory while the run trains.
    handover = [branch_source]
    del branch_source
    with _locked(run_dir, info):  # bad input was refused above, without touching run_dir
        return _train_locked(cfg, run_cfg, info, config, stats, plan, point_id, run_dir, corpus, handover)


def _train_locked(cfg: DictConfig, run_cfg: TrainConfig, info: DistInfo, config: dict[str, Any], stats: Any,
                  plan: BudgetPlan, point_id: str, run_dir: Path, corpus: Any,
                  handover: list[dict[str, Any] | None]) -> records.LLMRunRecord:
    from optlaw.models import build_model

    branch_source = handover.pop()

    existing = _existing_record(run_dir, point_id, config, info)  # again: it may have finished while we waited
    if existing is not None and existing.status in records.FINISHED:
        return existing
    device = info.device
    latest = ckpt.latest(run_dir, map_location=device)
    if latest is not None:
        path, saved = latest
        check_run_dir_owner(run_dir, point_id, config, str(saved.get("run_id")), _saved_config(saved), str(path))
    else:
        path, saved = None, None

    # --- build ---
    torch.manual_seed(run_cfg.seed)
    raw_model = build_model(run_cfg.model).to(device)
    perf_notes = prepare_model(raw_model, run_cfg.perf, device, run_cfg.compile)
    sharded = uses_fsdp(run_cfg.perf.sharding, info.world_size)
    if sharded:  # before the optimizer is built: it must hold the sharded parameters
        shard_model(raw_model)
        perf_notes.append(f"FSDP2 over {info.world_size} ranks")
    from optlaw.optim import build_optimizer

    bundle = build_optimizer(raw_model, run_cfg.optimizer, run_cfg.model)
    # Values measured on each rank's machine (Muon's Newton-Schulz dtype) must agree, or ranks step apart.
    bundle.adopt_choices(from_main(bundle.choices(), info))

    state = LoopState()
    if saved is not None:
        _restore(saved, raw_model, bundle, state, sharded, source=f"checkpoint {path}")
        if info.is_main:
            print(f"{point_id}: resuming from step {state.step} ({plan.tokens_at(state.step)} tokens)", flush=True)
    elif branch_source is not None:
        _restore(branch_source, raw_model, bundle, state, sharded, source=f"init.from_checkpoint={run_cfg.init.from_checkpoint}")
        _start_branch(state, branch_source["run_id"], plan, str(run_cfg.init.from_checkpoint))
        if info.is_main:
            print(f"{point_id}: branching from {branch_source['run_id']} at step {state.step}", flush=True)
    del branch_source

    model: torch.nn.Module = raw_model
    if info.is_distributed and not sharded:
        model = torch.nn.parallel.DistributedDataParallel(raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    if info.is_main:
        print("perf: " + ", ".join(perf_notes), flush=True)

    record = new_record(
        run_id=point_id,
        config=config,
        stats=stats,
        plan=plan,
        entropy_floor_nats=getattr(corpus, "entropy_floor_nats", None),
        hyperparameters=bundle.resolved,
        choices=bundle.choices(),
        machine=machine_key(device),
        branch=state.branch,
        started_at=state.started_at,
    )
    state.started_at = record.started_at
    routing = plain(list(bundle.routing_table))
    if info.is_main:
        _print_run_header(point_id, run_dir, plan, stats, routing)

    # --- train ---
    outputs = RunOutputs(run_dir, info.is_main, record, state, plan, peak_bf16_flops(device, run_cfg.hardware.peak_bf16_tflops))
    try:
        outputs.open(cfg, run_cfg, routing, resumed=bool(saved is not None or state.branch))
        loop = TrainLoop(TrainContext(
            cfg=run_cfg, info=info, plan=plan, model=model, raw_model=raw_model, bundle=bundle, corpus=corpus,
            state=state, outputs=outputs, checkpoints=ckpt.CheckpointPolicy.from_config(run_cfg.checkpoint),
            run_dir=run_dir, run_id=point_id, config=config,
        ))
        with PreemptionFlag() as preemption:
            loop.run(preemption)
    except Preempted as exc:
        outputs.preempted(str(exc))
        outputs.close(exit_code=0)
        raise
    except KeyboardInterrupt:
        outputs.preempted("interrupted by a second Ctrl-C, without a checkpoint; rerun the same command "
                          "to resume from the previous checkpoint")
        outputs.close(exit_code=1)
        raise
    except OSError as exc:  # disk full, read-only, gone: the OS's words, in the record and on one line
        error = disk_error(exc)
        outputs.failed(error, reason=str(error))
        outputs.close(exit_code=1)
        raise error from None
    except BaseException as exc:
        outputs.failed(exc)
        outputs.close(exit_code=1)
        raise
    outputs.close(exit_code=0)
    return outputs.record


def _existing_record(run_dir: Path, point_id: str, config: dict[str, Any], info: DistInfo) -> records.LLMRunRecord | None:
    """The record already in ``run_dir``, checked to be this run's; a damaged one is kept aside (None)."""
    try:
        existing = records.read_record(run_dir)
    except records.CorruptRecord as exc:
        if info.is_main:
            kept = records.set_aside_corrupt(run_dir)
            print(f"warning: {exc}; kept as {kept}, writing a fresh record (resuming from a checkpoint if one loads)",
                  flush=True)
        return None
    if existing is not None:
        check_run_dir_owner(run_dir, point_id, config, existing.run_id, existing.config, str(run_dir / records.RECORD_NAME))
    return existing


@contextlib.contextmanager
def _locked(run_dir: Path, info: DistInfo) -> Iterator[None]:
    """Rank 0 holds ``run_dir``'s lock while the run trains; every rank stops when it cannot."""
    lock = RunLock(run_dir)
    refused: UserError | None = None
    if info.is_main:
        try:
            lock.acquire()
        except UserError as exc:
            refused = exc
        except OSError as exc:
            refused = disk_error(exc)
    if any_rank(refused is not None, info):
        raise refused or UserError(f"run_dir={run_dir} is being trained by another process; see rank 0's message")
    try:
        yield
    finally:
        lock.release()


def _saved_config(saved: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return ckpt.decode_config(saved["config"])
    except (KeyError, TypeError, ValueError):
        return None


def _start_branch(state: LoopState, parent_run_id: str, plan: BudgetPlan, from_checkpoint: str) -> None:
    """The loop state of a branch, restored from its parent's checkpoint, made this run's own."""
    state.branch = {
        "parent_run_id": parent_run_id,
        "from_step": state.step,
        "from_tokens": plan.tokens_at(state.step),
        "from_checkpoint": from_checkpoint,
    }
    # Evaluations up to the branch step are of this very trajectory and stay; the
    # parent's timings and start time describe the parent's process, not this run.
    state.evals = [e for e in state.evals if e["step"] <= state.step]
    state.started_at = state.wandb_id = None  # a branch is its own run directory: its own W&B run
    state.wall_time_s = state.train_time_s = 0.0
    state.timed_steps = 0
    state.fwd_bwd_s = state.optimizer_step_s = state.data_wait_s = 0.0


def _restore(saved: dict[str, Any], raw_model: torch.nn.Module, bundle: Any, state: LoopState, sharded: bool,
             source: str) -> None:
    try:
        if sharded:
            load_sharded(raw_model, bundle, saved)
        else:
            raw_model.load_state_dict(saved["model"])
            bundle.load_state_dict(saved["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        # torch reports a shape mismatch as a page of size lines: one line names the file and the way out.
        first = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source} does not fit this model and optimizer ({first[:200]}); "
                        "it is another model's checkpoint: use another run_dir, or delete it") from None
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
