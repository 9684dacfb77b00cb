"""optlaw's training throughput against a bare PyTorch loop, side by side in one process.

Usage: .venv/bin/python scripts/bench/bench_train.py [--model llama/1m] [--steps 30] [--skip 10] [--repeats 3] [--threads N]

Both sides train the same model (same init), with the same global batch, micro-batch
and accumulation, the same batches from the same corpus, AdamW and gradient clipping.
The bare loop is the minimal nanoGPT-style loop; optlaw is `run_point` with its
logging, record updates, schedule and divergence checks switched on (W&B off).
Throughput is timed from the end of step --skip to the end of the last step (so
start-up and the final evaluation are excluded on both sides): optlaw's from the
wall clock it writes into metrics.jsonl, the bare loop's from perf_counter.
Repeats alternate which side runs first; the ratio of medians is printed.
Target: optlaw within 5% of the bare loop (ratio >= 0.95).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from optlaw.config import compose
from optlaw.data import build_corpus
from optlaw.models import build_model
from optlaw.entry.points import run_point
from optlaw.machine import describe
from optlaw.train.budget import plan_budget
from optlaw.train.metrics import read_metrics


def optlaw_tokens_per_s(overrides: list[str], run_dir: Path, skip: int) -> float:
    with contextlib.redirect_stdout(io.StringIO()):  # the run header and routing table
        run_point(compose("train", overrides + [f"run_dir={run_dir}"]))
    rows = {r["step"]: r for r in read_metrics(run_dir) if "wall_time_s" in r}
    last = max(rows)
    tokens = rows[last]["tokens"] - rows[skip]["tokens"]
    return tokens / (rows[last]["wall_time_s"] - rows[skip]["wall_time_s"])


def bare_tokens_per_s(cfg, skip: int) -> float:
    plan = plan_budget(cfg, 1, 1)
    corpus = build_corpus(cfg.data, cfg.data.get("cache_dir"))
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)  # the kernel optlaw uses
    accum, start = plan.grad_accum_steps, None
    for step in range(plan.total_steps):
        if step == skip:
            start = time.perf_counter()
        for micro in range(accum):
            batch = corpus.train_batch(int(cfg.seed), step, micro, 0, 1, plan.micro_batch_size, plan.seq_len)
            logits = model(batch[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if not math.isfinite(loss.item()):  # the bare loop also reads the loss each step
            raise RuntimeError("bare loop diverged")
    return (plan.total_steps - skip) * plan.global_batch_tokens / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llama/1m")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=10, help="steps excluded from timing (must be a logged step)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global_tokens = 8192
    overrides = [
        f"model={args.model}", "device=cpu", "progress=false", "wandb.mode=disabled",
        f"batch.global_tokens={global_tokens}", f"budget.tokens={args.steps * global_tokens}",
        "eval.fractions=[]", "eval.tokens=4096", "step_cost.repeats=0", "log.every_steps=5",
        "checkpoint.every_steps=0",
    ]
    cfg = compose("train", overrides)
    plan = plan_budget(cfg, 1, 1)
    print(f"model {args.model}, {plan.total_steps} steps of {global_tokens} tokens "
          f"(micro-batch {plan.micro_batch_size} x {plan.grad_accum_steps}), timed after step {args.skip}, "
          f"{args.repeats} interleaved repeats, torch threads {torch.get_num_threads()}")
    print(f"machine: {describe()}", flush=True)
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = ("optlaw", "bare") if repeat % 2 == 0 else ("bare", "optlaw")
            for side in order:
                if side == "optlaw":
                    ours.append(optlaw_tokens_per_s(overrides, Path(tmp) / f"r{repeat}", args.skip))
                else:
                    bare.append(bare_tokens_per_s(cfg, args.skip))
            print(f"repeat {repeat}: optlaw {ours[-1]:.0f} tok/s, bare {bare[-1]:.0f} tok/s, ratio {ours[-1] / bare[-1]:.3f}", flush=True)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"optlaw / bare training tokens/s (median of {args.repeats}): {ratio:.3f} "
          f"({statistics.median(ours):.0f} vs {statistics.median(bare):.0f} tok/s); target >= 0.95")
    return 0


if __name__ == "__main__":
    sys.exit(main())
