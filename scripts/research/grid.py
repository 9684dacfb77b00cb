"""Research: a (width x budget x optimizer x lr_mult) grid trained in this process, WSD with
branching as `optlaw sweep` does it (one trunk per (width, optimizer, lr); shorter budgets
branch off at their decay start). Appends one JSONL row per point (see inproc.py).

usage: grid.py OUT.jsonl --widths 16,32 --head-dim 8 --tokens 131072,524288 --opts adamw --lr 1,2 [--extra k=v ...]
(widths with head_dim 8 are the tiny ladder: 16, 24, 32, 40, 56 = llama/7k .. llama/75k)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, "scripts/research")
from inproc import run_point  # noqa: E402
from throughput import tiny  # noqa: E402

from optlaw.config import compose  # noqa: E402
from optlaw.models import model_stats  # noqa: E402
from optlaw.sweep.grid import decay_start_tokens  # noqa: E402
from optlaw.train.checkpoint import keep_path  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--widths", required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--tokens", required=True)
    p.add_argument("--opts", default="adamw")
    p.add_argument("--lr", default="1")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab", type=int, default=128)
    p.add_argument("--warmup", type=int, default=16384)
    p.add_argument("--decay", type=float, default=0.2)
    p.add_argument("--eval-tokens", type=int, default=32768)
    p.add_argument("--root", default="/tmp/dr_grid")
    p.add_argument("--max-tpp", type=float, default=1e9)
    p.add_argument("--min-tpp", type=float, default=0)
    p.add_argument("--extra", nargs="*", default=[])
    return p


def run_grid(a: argparse.Namespace) -> None:
    done = set()
    if os.path.exists(a.out):
        done = {json.loads(line)["tag"] for line in open(a.out)}
    for d in [int(w) for w in a.widths.split(",")]:
        for opt in a.opts.split(","):
            for lr in a.lr.split(","):
                base = tiny(d, a.layers, a.head_dim, a.vocab, a.seq_len) + [
                    f"optimizer={opt}", f"optimizer.lr_mult={lr}", f"batch.global_tokens={a.batch}",
                    f"batch.micro_batch_size={a.batch // a.seq_len}", f"eval.tokens={a.eval_tokens}",
                    "eval.fractions=[]", "schedule.name=wsd", f"schedule.decay_fraction={a.decay}",
                    f"schedule.warmup_tokens={a.warmup}", "checkpoint.every_steps=100000", *a.extra]
                budgets = sorted(int(t) for t in a.tokens.split(","))
                cfgs = {D: compose("train", base + [f"budget.tokens={D}"]) for D in budgets}
                n = model_stats(cfgs[budgets[0]].model).n_non_embedding
                budgets = [D for D in budgets if a.min_tpp <= D / n <= a.max_tpp]
                if not budgets:
                    continue
                trunk_D = budgets[-1]
                starts = {D: decay_start_tokens(cfgs[D]) for D in budgets[:-1]}
                key = "-".join(x.split("=", 1)[1].replace("/", "_") for x in base if x.startswith(("model.d_model", "optimizer=", "optimizer.lr_mult")) )
                extra_key = "-".join(e.replace("/", "_") for e in a.extra)
                trunk_dir = Path(a.root) / f"{key}-{extra_key}-b{a.batch}-w{a.warmup}-T{trunk_D}"
                tag = f"{opt} d{d} lr{lr} D{trunk_D} b{a.batch} {' '.join(a.extra)}"
                if tag not in done:
                    run_point(base + [f"budget.tokens={trunk_D}",
                                      f"checkpoint.keep_at_tokens=[{','.join(str(s) for s in sorted(starts.values()))}]",
                                      f"run_dir={trunk_dir}"], a.out, tag=tag)
                for D in budgets[:-1]:
                    tag = f"{opt} d{d} lr{lr} D{D} b{a.batch} {' '.join(a.extra)}"
                    if tag in done:
                        continue
                    run_point(base + [f"budget.tokens={D}", f"init.from_checkpoint={keep_path(trunk_dir, starts[D])}",
                                      f"run_dir={trunk_dir}-br{D}"], a.out, tag=tag)


if __name__ == "__main__":
    run_grid(parser().parse_args())
