"""The random-feature alpha study: alpha(optimizer, s) with intervals, shifts over GD,
a sensitivity table over the setting, the spectral-diagnostic check, plots and report.

Work is split into one task per (spectrum s, seed, problem variant); each task draws
the features once, does one eigendecomposition per N and evaluates every optimizer
and every (steps, damping) variant on it. Tasks run in worker processes with one
BLAS thread each, because two processes x one thread beat one process x two threads
on a shared 2-core machine (measured: threads thrash under load).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from optlaw.config import as_config, to_plain
from optlaw.config.proxy import RandomFeaturesStudyConfig
from optlaw.proxy.optimizers import check_optimizers
from optlaw.proxy.rf_report import write_outputs
from optlaw.proxy.spectra import check_source, check_spectrum_exponent


@dataclass(frozen=True)
class Variant:
    """A study setting; the main one and each sensitivity variant change one knob."""

    name: str
    steps: int
    damping: float
    source_r: float
    input_dim: int
    n_samples: int | None = None


def solve_task(task: dict) -> list[dict]:
    """Worker: every (variant, N, optimizer) row for one (s, seed, source_r, input_dim)."""
    from optlaw.proxy.diagnostic import estimate_s
    from optlaw.proxy.random_features import RandomFeatureProblem

    problem = RandomFeatureProblem(task["input_dim"], task["s"], task["source_r"], max(task["N_values"]),
                                   task["seed"], noise_variance=task["noise_variance"], n_samples=task["n_samples"])

    rows = []
    s_hat = None
    for N in sorted(task["N_values"], reverse=True):
        if s_hat is None:  # the diagnostic's view of this draw: the largest model's curvature spectrum
            s_hat = estimate_s(np.linalg.eigvalsh(problem.curvature(N)[0])).s
        requests = [(name, combo["steps"], combo["damping"]) for combo in task["combos"] for name in combo["optimizers"]]
        variants = [combo["variant"] for combo in task["combos"] for _ in combo["optimizers"]]
        results = problem.solve_many(N, requests, task["multipliers"])
        for variant, request, res in zip(variants, requests, results):
            rows.append({
                "variant": variant, "optimizer": res.optimizer, "s": task["s"], "seed": task["seed"], "N": N,
                "D": res.steps, "damping": request[2],
                "source_r": task["source_r"], "input_dim": task["input_dim"], "n_samples": task["n_samples"],
                "loss": res.loss, "irreducible": res.irreducible, "approximation": res.approximation,
                "optimization": res.optimization, "eta": res.eta, "eta_multiplier": res.eta_multiplier,
                "s_hat": s_hat,
            })
    return rows


def build_tasks(cfg: dict, main: Variant, variants: list[Variant]) -> list[dict]:
    """Group (s, seed, variant) work so that variants sharing a feature draw share the eigendecompositions."""
    optimizers = check_optimizers(cfg["optimizers"])
    sens = cfg["sensitivity"]
    sens_seeds = list(sens["seeds"])
    sens_optimizers = check_optimizers(sens["optimizers"])
    groups: dict[tuple, list[dict]] = {}
    for s in cfg["s_values"]:
        for seed in cfg["seeds"]:
            key = (s, seed, main.source_r, main.input_dim, main.n_samples)
            groups.setdefault(key, []).append({"variant": main.name, "steps": main.steps, "damping": main.damping,
                                               "optimizers": optimizers})
        for v in variants:
            for seed in sens_seeds:
                key = (s, seed, v.source_r, v.input_dim, v.n_samples)
                groups.setdefault(key, []).append({"variant": v.name, "steps": v.steps, "damping": v.damping,
                                                   "optimizers": sens_optimizers})
    return [{"s": s, "seed": seed, "source_r": r, "input_dim": dim, "n_samples": n, "combos": combos,
             "N_values": list(cfg["N_values"]), "noise_variance": float(cfg["noise_variance"]),
             "multipliers": list(cfg["step_size_multipliers"])}
            for (s, seed, r, dim, n), combos in groups.items()]


def sensitivity_variants(cfg: dict, main: Variant) -> list[Variant]:
    sens = cfg["sensitivity"]
    out = []
    if any(sens[k] for k in ("steps", "damping", "source_r", "input_dim", "n_samples")):
        # The setting itself on the sensitivity seeds, so each row compares like with like.
        out.append(Variant("baseline", main.steps, main.damping, main.source_r, main.input_dim, main.n_samples))
    for steps in sens["steps"]:
        out.append(Variant(f"steps={steps}", int(steps), main.damping, main.source_r, main.input_dim, main.n_samples))
    for damping in sens["damping"]:
        out.append(Variant(f"damping={damping}", main.steps, float(damping), main.source_r, main.input_dim,
                           main.n_samples))
    for r in sens["source_r"]:
        out.append(Variant(f"source_r={r}", main.steps, main.damping, float(r), main.input_dim, main.n_samples))
    for dim in sens["input_dim"]:
        out.append(Variant(f"input_dim={dim}", main.steps, main.damping, main.source_r, int(dim), main.n_samples))
    for n in sens["n_samples"]:
        out.append(Variant(f"n_samples={n}", main.steps, main.damping, main.source_r, main.input_dim,
                           None if n is None else int(n)))
    return out


def check_study_config(cfg: dict) -> dict:
    """The study config checked against its schema (RandomFeaturesStudyConfig), the proxy optimizer
    keys and the spectrum's range; returned as a plain dict with every key."""
    study = as_config(RandomFeaturesStudyConfig, cfg, "")
    check_optimizers(study.optimizers)
    for s in study.s_values:
        check_spectrum_exponent(s, "s_values")
    check_source(study.source_r, 1.0)
    return to_plain(study)


def run_rows(tasks: list[dict], workers: int, progress: bool = True) -> list[dict]:
    rows: list[dict] = []
    start = time.perf_counter()
    total = len(tasks)

    def report(done: int, task: dict) -> None:
        if progress:
            elapsed = time.perf_counter() - start
            print(f"[{done}/{total}] s={task['s']} seed={task['seed']} source_r={task['source_r']} "
                  f"input_dim={task['input_dim']} n_samples={task['n_samples']}  {elapsed:.0f} s",
                  file=sys.stderr, flush=True)

    if workers <= 1:
        for i, task in enumerate(tasks, 1):
            rows += solve_task(task)
            report(i, task)
        return rows
    # spawn: children import numpy after OPENBLAS_NUM_THREADS is set (fork would inherit the pool).
    previous = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(solve_task, t): t for t in tasks}
            for i, fut in enumerate(as_completed(futures), 1):
                rows += fut.result()
                report(i, futures[fut])
    finally:
        if previous is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = previous
    return rows


def run_study(cfg: dict, out) -> dict:
    """The whole study; returns the alpha.json content."""
    cfg = check_study_config(cfg)
    main = Variant("main", cfg["steps"], cfg["damping"], cfg["source_r"], cfg["input_dim"], cfg["n_samples"])
    variants = sensitivity_variants(cfg, main)
    tasks = build_tasks(cfg, main, variants)
    start = time.perf_counter()
    rows = run_rows(tasks, cfg["workers"], cfg["progress"])
    return write_outputs(Path(out), cfg, rows, main.name, variants, time.perf_counter() - start)
