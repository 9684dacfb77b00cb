#!/usr/bin/env python3
"""The GPU acceptance run of optlaw: one command, every CUDA path, within 8 minutes on one H100/H200.

    python scripts/gpu_check.py --wheels wheels/ --out gpu_check/     # on the GPU machine
    python scripts/gpu_check.py --cpu-smoke --out /tmp/gpu_check      # the same checks at toy sizes on CPU

Checks (docs/gpu.md says what each measures and the targets):
  environment   device, driver, torch, CUDA, transformers, the bf16 peak used for MFU
  precision     fp32 against bf16 autocast, same init and batches, 100+ steps: loss curves agree
  optimizers    AdamW (fused), Muon (bf16 Newton-Schulz), Shampoo, SOAP, 20+ steps each:
                finite losses, step time, step_cost_ratio, optimizer overhead
  throughput    tokens/s, MFU and peak memory of llama/150m and llama/1b at seq 2048, compile off and on
  checkpoint    save at the half, resume in a fresh run dir: final weights and optimizer state bitwise
                equal to the uninterrupted run
  sweep_fit     a two-point local sweep (`optlaw sweep`), then `optlaw fit`

Every check trains through optlaw's own trainer (optlaw.train.trainer.train), so what passes
here is the code path sweeps run. Each check has a time limit (soft: step counts are sized
for it; hard: SIGALRM ends it) and the results are written to gpu_check.json and
gpu_check.md after every check, so a crash or a timeout never loses finished checks.

``--wheels DIR`` first installs optlaw's missing dependencies from wheels prepared by
scripts/gpu_wheels.sh (pip --no-index into a temporary folder put on sys.path): the GPU
machine has torch and transformers but no internet.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]

# The distributions optlaw needs that a GPU box with torch + transformers lacks (scripts/gpu_wheels.sh
# downloads them with their dependencies).
MISSING_ON_GPU_BOX = ["hydra-core", "omegaconf", "antlr4-python3-runtime", "wandb", "submitit", "datasets",
                      "pytorch-optimizer", "liger-kernel"]

# Targets of issue #17 (docs/gpu.md): reported next to the measurement, never assumed.
TARGETS = {"mfu_llama_1b": 0.45, "muon_overhead": 0.05, "shampoo_overhead": 0.15, "soap_overhead": 0.15}
# fp32 vs bf16 autocast: the 10-step moving averages of the two train-loss curves may differ by at
# most this many nats at every step. bf16 rounds activations to 8 mantissa bits (~0.4% relative);
# over 100 steps of a small model that moves the loss by a few hundredths, while a real defect
# (wrong autocast region, a loss in bf16) moves it by tenths or diverges.
PRECISION_TOLERANCE_NATS = 0.05
MOVING_AVERAGE_STEPS = 10


@dataclass(frozen=True)
class Sizes:
    """What each check trains: GPU sizes (the issue's) or toy CPU sizes (--cpu-smoke)."""

    device: str
    small_model: str                      # precision, checkpoint
    optimizer_model: str
    throughput_models: tuple[tuple[str, int], ...]  # (preset, micro-batch)
    seq_len: int | None                   # None: the preset's own
    micro_batch: int
    precision_steps: int
    optimizer_steps: int
    throughput_steps: int
    checkpoint_steps: int
    step_cost_repeats: int
    sweep_tokens: tuple[int, int]
    limits_s: dict[str, int] = field(default_factory=dict)
    total_s: int = 480                    # the 8 minutes on a GPU, wheel install included
    extra: tuple[str, ...] = ()           # overrides for every run


GPU = Sizes(
    device="cuda", small_model="llama/20m", optimizer_model="llama/150m",
    throughput_models=(("llama/150m", 8), ("llama/1b", 4)), seq_len=None, micro_batch=4,
    precision_steps=120, optimizer_steps=24, throughput_steps=10, checkpoint_steps=8, step_cost_repeats=2,
    sweep_tokens=(40 * 8192, 80 * 8192),
    limits_s={"install": 60, "environment": 10, "precision": 50, "optimizers": 95, "throughput": 170,
              "checkpoint": 35, "sweep_fit": 60},
)
CPU_SMOKE = Sizes(
    device="cpu", small_model="llama/100k", optimizer_model="llama/100k",
    throughput_models=(("llama/100k", 4), ("llama/250k", 4)), seq_len=32, micro_batch=4,
    precision_steps=100, optimizer_steps=20, throughput_steps=3, checkpoint_steps=6, step_cost_repeats=1,
    sweep_tokens=(16384, 32768),
    # ~2 minutes alone on 2 cores; the limits leave room for a CI machine shared with other jobs.
    limits_s={"install": 120, "environment": 60, "precision": 240, "optimizers": 240, "throughput": 180,
              "checkpoint": 120, "sweep_fit": 300},
    total_s=1200, extra=("cpu_threads=1",),
)


class CheckTimeout(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# dependencies from prepared wheels


def install_wheels(wheels: Path, target: Path, packages: list[str] = MISSING_ON_GPU_BOX, dry_run: bool = False) -> list[str]:
    """``pip install --no-index --find-links wheels --target target`` of ``packages``; returns the command."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels),
           "--target", str(target), *packages]
    if not dry_run:
        subprocess.run(cmd, check=True)
    return cmd


def put_on_path(*folders: Path) -> None:
    """Make ``folders`` importable here and in the subprocesses this script starts."""
    for folder in reversed(folders):
        sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join([*map(str, folders), *filter(None, [os.environ.get("PYTHONPATH")])])


# ---------------------------------------------------------------------------------------------
# running the trainer


def train_run(sizes: Sizes, run_dir: Path, overrides: list[str], log: io.TextIOBase) -> Any:
    """One optlaw training run in this process; returns its run record."""
    from optlaw.config import compose
    from optlaw.train.trainer import train

    base = [f"device={sizes.device}", f"run_dir={run_dir}", "progress=false", "log.every_steps=1",
            "eval.fractions=[]", "wandb.mode=disabled", "checkpoint.every_steps=0", *sizes.extra]
    if sizes.seq_len:
        base.append(f"model.seq_len={sizes.seq_len}")
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return train(compose("train", base + overrides))


def seq_len_of(model: str, sizes: Sizes) -> int:
    from optlaw.config import compose

    return sizes.seq_len or int(compose("train", [f"model={model}"]).model.seq_len)


def budget(model: str, sizes: Sizes, steps: int, micro: int) -> list[str]:
    """Overrides for exactly ``steps`` steps of ``micro`` sequences (no accumulation), one eval batch."""
    tokens = micro * seq_len_of(model, sizes)
    return [f"model={model}", f"batch.micro_batch_size={micro}", f"batch.global_tokens={tokens}",
            f"budget.tokens={steps * tokens}", f"eval.tokens={tokens}", "schedule.warmup_fraction=0.1"]


def train_losses(run_dir: Path) -> list[float]:
    from optlaw.train.metrics import read_metrics

    return [float(row["train_loss"]) if row.get("train_loss") is not None else math.nan for row in read_metrics(run_dir)]


def moving_average(values: list[float], window: int) -> list[float]:
    return [sum(values[i - window + 1:i + 1]) / window for i in range(window - 1, len(values))]


# ---------------------------------------------------------------------------------------------
# the checks


def check_environment(sizes: Sizes, work: Path, log: io.TextIOBase) -> dict[str, Any]:
    import torch
    import transformers

    from optlaw.config import compose
    from optlaw.train.metrics import peak_tflops_for_name

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "cuda_available": torch.cuda.is_available(),
                            "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count()}
    if sizes.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is visible; run with --cpu-smoke on a machine without one")
        name = torch.cuda.get_device_name(0)
        table = dict(compose("train", []).hardware.peak_bf16_tflops)
        info.update(device=name, device_count=torch.cuda.device_count(),
                    memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30,
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    peak_bf16_tflops=peak_tflops_for_name(name, table), driver=_nvidia_driver())
    else:
        info.update(device="cpu", peak_bf16_tflops=None)
    try:
        from optlaw.models.loss import liger_available
        info["liger_kernel"] = liger_available()
    except Exception:  # noqa: BLE001 - reported, not fatal
        info["liger_kernel"] = False
    return {"passed": True, **info}


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_precision(sizes: Sizes, work: Path, log: io.TextIOBase) -> dict[str, Any]:
    """Same init, same batches, same AdamW: fp32 and bf16 autocast train-loss curves."""
    curves = {}
    common = budget(sizes.small_model, sizes, sizes.precision_steps, sizes.micro_batch) + ["step_cost.repeats=0"]
    for precision in ("fp32", "bf16"):
        run_train = train_run(sizes, work / f"precision_{precision}", common + [f"precision={precision}", "perf.tf32=false"], log)
        curves[precision] = train_losses(work / f"precision_{precision}")
        assert run_train.status.value == "done", f"{precision} run ended {run_train.status.value}"
    fp32, bf16 = moving_average(curves["fp32"], MOVING_AVERAGE_STEPS), moving_average(curves["bf16"], MOVING_AVERAGE_STEPS)
    gaps = [abs(a - b) for a, b in zip(fp32, bf16)]
    max_gap = max(gaps) if gaps and all(math.isfinite(g) for g in gaps) else math.inf
    return {
        "passed": len(curves["fp32"]) == sizes.precision_steps and max_gap <= PRECISION_TOLERANCE_NATS,
        "model": sizes.small_model, "steps": len(curves["fp32"]), "tolerance_nats": PRECISION_TOLERANCE_NATS,
        "max_moving_average_gap_nats": max_gap, "moving_average_steps": MOVING_AVERAGE_STEPS,
        "fp32_first_last": [curves["fp32"][0], curves["fp32"][-1]], "bf16_first_last": [curves["bf16"][0], curves["bf16"][-1]],
    }


def check_optimizers(sizes: Sizes, work: Path, log: io.TextIOBase) -> dict[str, Any]:
    rows = {}
    for name in ("adamw", "muon", "shampoo", "soap"):
        run_dir = work / f"optimizer_{name}"
        record = train_run(sizes, run_dir, budget(sizes.optimizer_model, sizes, sizes.optimizer_steps, sizes.micro_batch)
                           + [f"optimizer={name}", f"step_cost.repeats={sizes.step_cost_repeats}"], log)
        losses = train_losses(run_dir)
        cost = record.step_cost.to_plain() if hasattr(record.step_cost, "to_plain") else dict(record.step_cost or {})
        step_s = (record.mean_fwd_bwd_s or 0.0) + (record.mean_optimizer_step_s or 0.0)
        own, ref = cost.get("optimizer_step_s"), cost.get("adamw_step_s")
        overhead = (own - ref) / step_s if None not in (own, ref) and step_s > 0 else None
        rows[name] = {
            "status": record.status.value, "steps": len(losses), "finite": bool(losses) and all(map(math.isfinite, losses)),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "step_s": step_s, "optimizer_step_s": own, "adamw_step_s": ref, "window_steps": cost.get("window_steps"),
            "step_cost_ratio": record.step_cost_ratio, "overhead_of_step": overhead,
            "overhead_target": TARGETS.get(f"{name}_overhead"),
        }
    passed = all(r["status"] == "done" and r["finite"] and r["steps"] >= sizes.optimizer_steps for r in rows.values())
    return {"passed": passed, "model": sizes.optimizer_model, "optimizers": rows}


def check_throughput(sizes: Sizes, work: Path, log: io.TextIOBase) -> dict[str, Any]:
    import torch

    from optlaw.models.loss import resolve_loss_impl

    rows = []
    device = torch.device(sizes.device)
    variants = [(model, micro, compiled, "auto") for model, micro in sizes.throughput_models for compiled in (False, True)]
    if resolve_loss_impl("auto", device) == "liger":  # measure the pure-PyTorch chunked loss against Liger's kernel too
        model, micro = sizes.throughput_models[-1]
        variants.append((model, micro, True, "chunked"))
    for model, micro, compiled, loss_impl in variants:
        run_dir = work / f"throughput_{model.replace('/', '_')}_{'compile' if compiled else 'eager'}_{loss_impl}"
        if sizes.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        record = train_run(sizes, run_dir, budget(model, sizes, sizes.throughput_steps, micro)
                           + [f"compile={str(compiled).lower()}", f"perf.loss_impl={loss_impl}", "step_cost.repeats=0"], log)
        peak_gib = torch.cuda.max_memory_allocated() / 2**30 if sizes.device == "cuda" else None
        peak = _peak_flops(sizes)
        mfu = record.tokens_per_s * record.flops_per_token / peak if peak and record.tokens_per_s else None
        rows.append({"model": model, "compile": compiled, "loss": resolve_loss_impl(loss_impl, device), "micro_batch": micro, "seq_len": seq_len_of(model, sizes),
                     "status": record.status.value, "tokens_per_s": record.tokens_per_s, "mfu": mfu,
                     "peak_memory_gib": peak_gib, "wall_s": time.perf_counter() - started,
                     "mfu_target": TARGETS["mfu_llama_1b"] if model.endswith("/1b") else None})
    return {"passed": all(r["status"] == "done" and r["tokens_per_s"] for r in rows), "runs": rows}


def _peak_flops(sizes: Sizes) -> float | None:
    if sizes.device != "cuda":
        return None
    import torch

    from optlaw.config import compose
    from optlaw.train.metrics import peak_bf16_flops

    return peak_bf16_flops(torch.device("cuda", 0), dict(compose("train", []).hardware.peak_bf16_tflops))


def check_checkpoint(sizes: Sizes, work: Path, log: io.TextIOBase) -> dict[str, Any]:
    """Run A trains straight through, keeping a checkpoint at the half; run B starts from that checkpoint."""
    import torch

    from optlaw.train import checkpoint as ckpt

    steps, half = sizes.checkpoint_steps, sizes.checkpoint_steps // 2
    common = budget(sizes.small_model, sizes, steps, sizes.micro_batch) + ["step_cost.repeats=0"]
    tokens_per_step = sizes.micro_batch * seq_len_of(sizes.small_model, sizes)
    straight, resumed = work / "checkpoint_straight", work / "checkpoint_resumed"
    train_run(sizes, straight, common + [f"checkpoint.keep_at_tokens=[{half * tokens_per_step}]"], log)
    # What a preempted run leaves: its rotating checkpoint at the half, in its own run dir.
    ckpt.checkpoint_dir(resumed).mkdir(parents=True)
    shutil.copy(ckpt.keep_path(straight, half * tokens_per_step), ckpt.step_path(resumed, half))
    train_run(sizes, resumed, common, log)
    a = ckpt.load(ckpt.step_path(straight, steps))
    b = ckpt.load(ckpt.step_path(resumed, steps))
    mismatches = _tensor_mismatches({"model": a["model"], "optimizer": a["optimizer"]},
                                    {"model": b["model"], "optimizer": b["optimizer"]})
    tensors = sum(isinstance(v, torch.Tensor) for v in _leaves({"m": a["model"], "o": a["optimizer"]}))
    return {"passed": not mismatches, "model": sizes.small_model, "steps": steps, "resumed_at": half,
            "tensors_compared": tensors, "mismatches": mismatches[:10],
            "device_of_saved_tensors": sorted({str(t.device) for t in _leaves(a["model"]) if isinstance(t, torch.Tensor)})}


def _leaves(tree: Any):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _leaves(v)
    else:
        yield tree


def _tensor_mismatches(a: Any, b: Any, path: str = "") -> list[str]:
    import torch

    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys differ"]
        return [m for k in a for m in _tensor_mismatches(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: lengths differ"]
        return [m for i, (x, y) in enumerate(zip(a, b)) for m in _tensor_mismatches(x, y, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return [] if a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) else [path]
    return [] if a == b else [path]


def check_sweep_fit(sizes: Sizes, work: Path, log: io.TextIOBase) -> dict[str, Any]:
    """`optlaw sweep` (two budgets of one model, local launcher), then `optlaw fit` on its runs."""
    sweep_dir, fit_dir = work / "sweep", work / "fit"
    model = sizes.small_model
    tokens_per_step = sizes.micro_batch * seq_len_of(model, sizes)
    # sweep.KEY changes the sweep definition; any other key=value goes to every point's train overrides.
    point = [f"device={sizes.device}", f"batch.global_tokens={tokens_per_step}", f"batch.micro_batch_size={sizes.micro_batch}",
             f"eval.tokens={tokens_per_step}", "eval.fractions=[]", "checkpoint.every_steps=0", "progress=false",
             "step_cost.repeats=0", *([f"model.seq_len={sizes.seq_len}"] if sizes.seq_len else []), *sizes.extra]
    sweep = [sys.executable, "-m", "optlaw", "sweep", "sweep=smoke", f"sweep_dir={sweep_dir}", "launcher=local",
             f"sweep.models=[{model}]", f"sweep.tokens=[{sizes.sweep_tokens[0]},{sizes.sweep_tokens[1]}]", *point]
    fit = [sys.executable, "-m", "optlaw", "fit", "--runs", str(sweep_dir), "--law", "shared", "--holdout", "none",
           "--out", str(fit_dir)]
    results = {}
    for name, cmd in (("sweep", sweep), ("fit", fit)):
        started = time.perf_counter()
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        results[name] = {"command": " ".join(cmd), "exit_code": done.returncode, "wall_s": time.perf_counter() - started}
    records = sorted(sweep_dir.rglob("run.json"))
    fit_json = fit_dir / "fit.json"
    return {"passed": results["sweep"]["exit_code"] == 0 and results["fit"]["exit_code"] == 0 and len(records) == 2
            and fit_json.exists(), "runs": len(records), "fit_json": str(fit_json) if fit_json.exists() else None, **results}


CHECKS: dict[str, Callable[[Sizes, Path, io.TextIOBase], dict[str, Any]]] = {
    "environment": check_environment, "precision": check_precision, "optimizers": check_optimizers,
    "throughput": check_throughput, "checkpoint": check_checkpoint, "sweep_fit": check_sweep_fit,
}


# ---------------------------------------------------------------------------------------------
# running the checks under their limits, writing the results


@contextlib.contextmanager
def time_limit(seconds: int):
    """SIGALRM ends a check that overruns (between Python bytecodes, so also between CUDA calls)."""
    def on_alarm(signum, frame):
        raise CheckTimeout(f"over its {seconds} s limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def import_everything() -> None:
    """Import what the checks use, once, before any time limit is armed."""
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import optlaw.train.trainer  # noqa: F401
    from optlaw.config import compose

    compose("train", [])


def run_checks(sizes: Sizes, out: Path, only: list[str], started: float, report: dict[str, Any]) -> None:
    work = out / "work"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    for name in only:
        left = sizes.total_s - (time.perf_counter() - started)
        limit = min(sizes.limits_s[name], max(1, int(left)))
        t0 = time.perf_counter()
        with open(out / "logs" / f"{name}.log", "w") as log:
            try:
                with time_limit(limit):
                    result = CHECKS[name](sizes, work, log)
            except Exception as exc:  # noqa: BLE001 - one check failing must not lose the others
                result = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
                import traceback
                traceback.print_exc(file=log)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        result["limit_s"] = limit
        report["checks"][name] = result
        write_report(report, out)
        print(f"{name}: {'pass' if result['passed'] else 'FAIL'} in {result['seconds']} s"
              + (f" ({result['error']})" if "error" in result else ""), flush=True)


def write_report(report: dict[str, Any], out: Path) -> None:
    from optlaw.jsonio import write_json_atomic

    report["passed"] = all(c.get("passed") for c in report["checks"].values())
    write_json_atomic(out / "gpu_check.json", report)
    (out / "gpu_check.md").write_text(markdown(report))


def _fmt(value: Any, pattern: str = "{:.3g}") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return pattern.format(value)
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    """The results as markdown tables (the form docs/gpu.md quotes)."""
    checks = report["checks"]
    env = checks.get("environment", {})
    lines = [f"# gpu_check ({report['mode']}) {report['date']}", "",
             f"device: {env.get('device', '?')}, driver {env.get('driver', '-')}, torch {env.get('torch', '?')}, "
             f"transformers {env.get('transformers', '?')}, peak bf16 {_fmt(env.get('peak_bf16_tflops'))} TFLOP/s", "",
             "| check | result | seconds | limit s | note |", "|---|---|---|---|---|"]
    for name, c in checks.items():
        note = c.get("error", "")
        if name == "precision" and "max_moving_average_gap_nats" in c:
            note = f"max gap {_fmt(c['max_moving_average_gap_nats'])} nats (tolerance {c['tolerance_nats']}) over {c['steps']} steps"
        if name == "checkpoint" and "tensors_compared" in c:
            note = f"{c['tensors_compared']} tensors, {len(c['mismatches'])} differ"
        lines.append(f"| {name} | {'pass' if c.get('passed') else 'FAIL'} | {c.get('seconds')} | {c.get('limit_s')} | {note} |")
    if "optimizers" in checks.get("optimizers", {}):
        lines += ["", f"Optimizers on {checks['optimizers']['model']}:", "",
                  "| optimizer | steps | finite | step s | optimizer step s | AdamW step s | step_cost_ratio | overhead of step | target |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in checks["optimizers"]["optimizers"].items():
            lines.append(f"| {name} | {r['steps']} | {_fmt(r['finite'])} | {_fmt(r['step_s'])} | {_fmt(r['optimizer_step_s'])} | "
                         f"{_fmt(r['adamw_step_s'])} | {_fmt(r['step_cost_ratio'])} | {_fmt(r['overhead_of_step'], '{:.1%}')} | "
                         f"{_fmt(r['overhead_target'], '<= {:.0%}')} |")
    if "runs" in checks.get("throughput", {}):
        lines += ["", "| model | compile | loss | micro-batch x seq | tokens/s | MFU | peak memory GiB | target MFU |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in checks["throughput"]["runs"]:
            lines.append(f"| {r['model']} | {_fmt(r['compile'])} | {r['loss']} | {r['micro_batch']} x {r['seq_len']} | {_fmt(r['tokens_per_s'], '{:,.0f}')} | "
                         f"{_fmt(r['mfu'], '{:.1%}')} | {_fmt(r['peak_memory_gib'], '{:.1f}')} | {_fmt(r['mfu_target'], '>= {:.0%}')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="the same checks at toy sizes on CPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"), help="folder for gpu_check.json/.md, logs, runs")
    parser.add_argument("--wheels", type=Path, help="install optlaw's missing dependencies from this wheel folder first")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), default=list(CHECKS), help="run only these checks")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sizes = CPU_SMOKE if args.cpu_smoke else GPU
    if args.wheels is not None and not args.wheels.is_dir():
        print(f"error: --wheels {args.wheels} is not a folder; make one with scripts/gpu_wheels.sh", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: --out {args.out} is not empty; give a new folder (runs in it would be resumed, not re-measured)",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    install = {"passed": True, "wheels": None}
    if args.wheels is not None:
        site = Path(tempfile.mkdtemp(prefix="optlaw_site_"))
        t0 = time.perf_counter()
        try:
            install["command"] = " ".join(install_wheels(args.wheels, site))
            put_on_path(site)
        except subprocess.CalledProcessError as exc:
            install.update(passed=False, error=f"pip exited {exc.returncode}")
        install.update(wheels=str(args.wheels), site=str(site), seconds=round(time.perf_counter() - t0, 1))
    put_on_path(REPO / "src")  # optlaw from this checkout, whether or not it is pip-installed
    report: dict[str, Any] = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu",
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "budget_s": sizes.total_s, "checks": {"install": install}}
    if not install["passed"]:
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
        print(f"error: installing the wheels failed ({install['error']}); see pip's output above", file=sys.stderr)
        return 1
    import_everything()  # outside the time limits: an alarm inside an import leaves torch half-initialised
    run_checks(sizes, args.out, args.only, started, report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(report, args.out)
    print(f"{'all checks passed' if report['passed'] else 'some checks FAILED'} in {report['seconds']} s; "
          f"{args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
