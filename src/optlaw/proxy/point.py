"""One proxy grid point -> a ``run.json`` record of the same type an LLM run writes
(``optlaw.records.ProxyRunRecord``, a ``RunRecord``).

``optlaw.entry.points.run_point`` calls ``run(cfg)`` for ``task=random_features`` and
``task=quadratic``. Mapping onto the shared record: N (= N_total = N_non_embedding)
is the model-size axis, D (= tokens_trained) is the number of optimizer steps, and
``final_val_loss`` is the population loss, so sweeps, status and fits work unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from optlaw import records
from optlaw.config import as_config, to_plain
from optlaw.config.proxy import POINT_SCHEMAS, ProxyPointConfig, QuadraticPointConfig, RandomFeaturesPointConfig
from optlaw.errors import UserError
from optlaw.proxy.cost import (dense_step_cost_ratio, diagonal_step_cost_ratio, quadratic_flops,
                               random_features_flops)
from optlaw.proxy.optimizers import check_optimizer
from optlaw.proxy.quadratic import QuadraticProblem
from optlaw.proxy.random_features import RandomFeatureProblem
from optlaw.proxy.spectra import check_source, check_spectrum_exponent

TASKS = tuple(POINT_SCHEMAS)


@functools.lru_cache(maxsize=4)
def _quadratic_problem(feature_dim: int, s: float, source_r: float, irreducible_loss: float) -> QuadraticProblem:
    # A study runs hundreds of points on one problem; building a 1M-mode spectrum each time dominated.
    return QuadraticProblem(feature_dim, s, source_r, irreducible_loss)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_point_config(cfg: dict) -> ProxyPointConfig:
    """The point's config as its checked schema, plus the proxy stage's own rules (optimizer
    keys, the spectrum's range); a one-line UserError before any compute."""
    task = cfg.get("task")
    if task not in TASKS:
        raise UserError(f"task={task!r} is not a proxy task; choose one of: {', '.join(TASKS)}")
    point = as_config(POINT_SCHEMAS[task], cfg, "")
    check_optimizer(point.proxy_optimizer)
    check_spectrum_exponent(point.s)
    check_source(point.source_r, point.s)
    return point


def run_label(cfg: dict) -> str:
    return f"{cfg['task']}-{cfg['proxy_optimizer']}-s{cfg['s']}-N{cfg['N']}-D{cfg['steps']}-seed{cfg['seed']}"


def run_id(cfg: dict) -> str:
    """The run id of a resolved proxy-point config (plain dict): ``<label>-<semantic hash>``."""
    return records.make_run_id(cfg, label=run_label(cfg))


@dataclass(frozen=True, kw_only=True)
class PointResult:
    """What solving one point measures: the record's measured fields (no I/O)."""

    final_val_loss: float
    loss_parts: dict[str, float]
    flops: float
    step_cost_ratio: float
    preconditioner_setup_s: float
    hyperparameters: dict


def solve_point(cfg: ProxyPointConfig) -> PointResult:
    """The measured fields of one point (no I/O)."""
    name, N, steps, damping = cfg.proxy_optimizer, cfg.N, cfg.steps, cfg.damping
    mults = list(cfg.step_size_multipliers)
    if isinstance(cfg, RandomFeaturesPointConfig):
        problem = RandomFeatureProblem(cfg.input_dim, cfg.s, cfg.source_r, N, cfg.seed,
                                       noise_variance=cfg.noise_variance, n_samples=cfg.n_samples)
        result = problem.solve(N, [name], steps, damping, mults)[0]
        parts = {"irreducible": result.irreducible, "approximation": result.approximation,
                 "optimization": result.optimization}
        eta, mult, searched = result.eta, result.eta_multiplier, result.searched
        H, c = problem.curvature(N)
        ratio, setup_s = dense_step_cost_ratio(H, c, name, damping, steps, cfg.timing_repeats)
        flops = random_features_flops(name, N, steps, cfg.input_dim, cfg.n_samples)
    else:
        assert isinstance(cfg, QuadraticPointConfig)
        problem = _quadratic_problem(cfg.feature_dim, cfg.s, cfg.source_r, cfg.irreducible_loss)
        qp = problem.parts(N, steps, name, damping, mults)
        parts = {"irreducible": qp.irreducible, "approximation": qp.approximation, "optimization": qp.optimization}
        eta, mult, searched = qp.eta, qp.eta_multiplier, qp.searched
        timed = "sign" if name == "diag" else name
        ratio, setup_s = diagonal_step_cost_ratio(problem.eigenvalues[:N], problem.theta_star[:N], timed, damping, steps,
                                         cfg.timing_repeats)
        flops = quadratic_flops(name, N, steps)
    return PointResult(
        final_val_loss=sum(parts.values()), loss_parts=parts, flops=flops, step_cost_ratio=ratio,
        preconditioner_setup_s=setup_s,
        hyperparameters={"eta": eta, "eta_multiplier": mult, "damping": damping,
                         "step_size_search": {str(k): v for k, v in searched.items()}},
    )


def run(cfg: DictConfig | dict) -> records.ProxyRunRecord:
    """Run one proxy grid point, writing run.json (running, then done/diverged/failed)."""
    plain = to_plain(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    point = check_point_config(plain)
    point_id = run_id(plain)
    run_dir = Path(point.run_dir or Path("runs") / point_id)
    N, steps = point.N, point.steps
    record = records.ProxyRunRecord(
        run_id=point_id, task=point.task, status=records.RUNNING,
        optimizer=point.proxy_optimizer, seed=point.seed, sweep=point.sweep_name,
        N=N, N_total=N, N_non_embedding=N, D=steps, tokens_trained=steps,
        s=point.s, source_r=point.source_r, damping=point.damping,
        n_samples=point.n_samples if isinstance(point, RandomFeaturesPointConfig) else None,
        run_dir=str(run_dir), config=plain, started_at=_now(),
    )
    kept = records.set_aside_corrupt(run_dir)  # a damaged run.json is kept, not overwritten
    if kept is not None:
        print(f"warning: {run_dir / records.RECORD_NAME} was corrupt; kept as {kept}", flush=True)
    records.write_record(run_dir, record)
    start = time.perf_counter()
    try:
        measured = solve_point(point)
    except BaseException as exc:
        record.status = records.FAILED
        record.error = record.reason = f"{type(exc).__name__}: {exc}"
        record.traceback, record.finished_at = traceback.format_exc(), _now()
        records.write_record(run_dir, record)
        raise
    finite = math.isfinite(measured.final_val_loss)
    runtime_s = time.perf_counter() - start
    record = dataclasses.replace(
        record, **dataclasses.asdict(measured), status=records.DONE if finite else records.DIVERGED,
        finished_at=_now(), runtime_s=runtime_s, wall_time_s=runtime_s, reason=None if finite else "non-finite final loss")
    records.write_record(run_dir, record)
    return record
