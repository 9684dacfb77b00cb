"""Optimizer step cost, side by side: optlaw's AdamW, Muon, Shampoo, SOAP and peer libraries.

Usage: .venv/bin/python scripts/bench/bench_optim.py [--model llama/1m] [--rounds 5] [--threads 1]

The machine matters (Muon's Newton-Schulz dtype is measured per machine; bf16 matmul is
native on CPUs with avx512_bf16/AMX and emulated elsewhere), so the output names it: CPU
model, the flags that matter, torch build and threads, and the load average.

Every implementation steps its own copy of the same model with the same gradients
(one real forward-backward on one batch). Peers replace only the hidden-matrix
optimizer; embeddings, head and norms use the same AdamW everywhere, exactly as
optlaw routes them. Rounds are interleaved (A B C ... A B C ...) and each round
times enough steps to include one preconditioner refresh (10), so the numbers are
amortised per-step costs; the table shows medians over rounds. On a shared,
noisy machine only ratios measured in one run mean anything.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
from omegaconf import OmegaConf

from optlaw.config import compose
from optlaw.machine import describe
from optlaw.models import build_model
from optlaw.optim import build_optimizer
from optlaw.optim.factory import import_optimizer_class

STEPS_PER_ROUND = 10


def optlaw_cfg(name: str, model: str) -> tuple[dict, dict]:
    cfg = compose("train", [f"optimizer={name}", f"model={model}"])
    return OmegaConf.to_container(cfg.optimizer, resolve=True), OmegaConf.to_container(cfg.model, resolve=True)


def peer_cfg(base: dict, cls: str, group_extra: dict | None = None, **kwargs) -> dict:
    """``base`` with the hidden-matrix optimizer swapped for ``cls`` (bench-only key ``_peer``)."""
    cfg = copy.deepcopy(base)
    cfg["_peer"] = {"cls": cls, "kwargs": kwargs, "group_extra": group_extra or {}}
    return cfg


def build_bundle(model: torch.nn.Module, opt_cfg: dict, model_cfg: dict):
    """optlaw's bundle; for a peer, its hidden-matrix optimizer is replaced by the peer class
    over the very same param groups (same params, lr, weight decay)."""
    peer = opt_cfg.get("_peer")
    bundle = build_optimizer(model, {k: v for k, v in opt_cfg.items() if k != "_peer"}, model_cfg)
    if peer:
        algorithm = bundle.resolved["groups"]["hidden_matrix"]["optimizer"]
        groups = [{**g, **peer["group_extra"]} for g in bundle.optimizers[algorithm].param_groups
                  if g["name"] == "hidden_matrix"]
        groups = [{k: v for k, v in g.items() if k in ("params", "lr", "weight_decay", *peer["group_extra"])} for g in groups]
        bundle.optimizers[algorithm] = import_optimizer_class(peer["cls"])(groups, **peer["kwargs"])
    return bundle


def implementations(model: str) -> list[tuple[str, str, dict, dict]]:
    """(algorithm, implementation label, optimizer cfg, model cfg); optlaw's first per algorithm."""
    rows = []
    adamw, model_cfg = optlaw_cfg("adamw", model)
    rows.append(("AdamW", "optlaw (torch.optim.AdamW fused)", adamw, model_cfg))
    muon, _ = optlaw_cfg("muon", model)
    rows += [
        ("Muon", "optlaw (batched; ns_dtype auto = {ns_dtype})", muon, model_cfg),
        ("Muon", "optlaw, ns_dtype=float32", {**muon, "muon": {**muon["muon"], "ns_dtype": "float32"}}, model_cfg),
        ("Muon", "optlaw, ns_dtype=bfloat16", {**muon, "muon": {**muon["muon"], "ns_dtype": "bfloat16"}}, model_cfg),
        ("Muon", "torch.optim.Muon (bf16 Newton-Schulz)", peer_cfg(muon, "torch.optim.Muon", adjust_lr_fn="match_rms_adamw"), model_cfg),
        ("Muon", "heavyball.Muon", peer_cfg(muon, "heavyball.Muon"), model_cfg),
        ("Muon", "pytorch_optimizer.Muon", peer_cfg(muon, "pytorch_optimizer.Muon", group_extra={"use_muon": True}, use_adjusted_lr=True), model_cfg),
    ]
    shampoo, _ = optlaw_cfg("shampoo", model)
    rows += [
        ("Shampoo", "optlaw (grafted, blocked, eigh every 10)", shampoo, model_cfg),
        ("Shampoo", "optlaw, root_dtype=float64", {**shampoo, "shampoo": {**shampoo["shampoo"], "root_dtype": "float64"}}, model_cfg),
        ("Shampoo", "torch_optimizer.Shampoo (update_freq=10)", peer_cfg(shampoo, "torch_optimizer.Shampoo", update_freq=10), model_cfg),
        ("Shampoo", "pytorch_optimizer.Shampoo (every 10)", peer_cfg(shampoo, "pytorch_optimizer.Shampoo", preconditioning_compute_steps=10), model_cfg),
        ("Shampoo", "pytorch_optimizer.ScalableShampoo (every 10)", peer_cfg(
            shampoo, "pytorch_optimizer.ScalableShampoo", preconditioning_compute_steps=10, start_preconditioning_step=1), model_cfg),
    ]
    soap, _ = optlaw_cfg("soap", model)
    rows += [
        ("SOAP", "optlaw (= pytorch_optimizer.SOAP)", soap, model_cfg),
        ("SOAP", "heavyball.SOAP (precondition_frequency=10)", peer_cfg(soap, "heavyball.SOAP", precondition_frequency=10), model_cfg),
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llama/1m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadier on a shared machine)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--only", nargs="*", help="algorithms to run besides AdamW (e.g. Shampoo SOAP)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())

    rows = implementations(args.model)
    if args.only:
        rows = [r for r in rows if r[0] == "AdamW" or r[0] in args.only]
    model_cfg = rows[0][3]
    base = build_model(model_cfg)
    tokens = torch.randint(0, int(model_cfg["vocab_size"]), (args.batch, int(model_cfg["seq_len"]) + 1))

    def forward_backward(model: torch.nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        model(tokens[:, :-1], labels=tokens[:, 1:]).loss.backward()

    forward_backward(base)
    grads = {}  # param -> the gradient it must see at every step

    def restore_grads(bundle) -> None:
        # Some libraries (heavyball) clear .grad inside step(); every step must see the same gradient.
        for group in bundle.param_groups:
            for p in group["params"]:
                p.grad = grads[p].clone()

    live = []  # (algorithm, label, bundle)
    choices: dict = {}  # how optlaw's measured defaults were chosen here
    failed = []
    for algorithm, label, opt_cfg, m_cfg in rows:
        model = copy.deepcopy(base)
        for copied, original in zip(model.parameters(), base.parameters()):
            copied.grad = original.grad.clone()  # deepcopy does not carry .grad
            grads[copied] = original.grad
        try:
            bundle = build_bundle(model, opt_cfg, m_cfg)
            for _ in range(2):  # allocation, first-step work and any compilation happen outside the timing
                restore_grads(bundle)
                bundle.step()
        except Exception as exc:  # a peer library failing must not hide the others' numbers
            failed.append((algorithm, label, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
            continue
        if "{ns_dtype}" in label:  # the dtype the probe chose on this machine
            label = label.format(ns_dtype=bundle.resolved["hyperparameters"]["muon"]["ns_dtype"])
            choices.update(bundle.choices())
        live.append((algorithm, label, bundle))

    # Wall time and this process's CPU time, both per step. On an idle machine they agree; on a
    # loaded one wall time also counts waiting for a core, which CPU time leaves out.
    times: dict[str, list[float]] = {label: [] for _, label, _ in live}
    cpu_times: dict[str, list[float]] = {label: [] for _, label, _ in live}
    fwd_bwd: list[float] = []
    for round_index in range(args.rounds):
        start = time.perf_counter()
        forward_backward(base)
        fwd_bwd.append(time.perf_counter() - start)
        order = live[round_index % len(live):] + live[: round_index % len(live)]  # rotate who goes first
        for _, label, bundle in order:
            elapsed = cpu = 0.0
            for _ in range(STEPS_PER_ROUND):
                restore_grads(bundle)
                start, cpu_start = time.perf_counter(), time.process_time()
                bundle.step()
                elapsed += time.perf_counter() - start
                cpu += time.process_time() - cpu_start
            times[label].append(elapsed / STEPS_PER_ROUND)
            cpu_times[label].append(cpu / STEPS_PER_ROUND)

    median = {label: statistics.median(v) for label, v in times.items()}
    median_cpu = {label: statistics.median(v) for label, v in cpu_times.items()}
    adamw_s = median[live[0][1]]
    fb_s = statistics.median(fwd_bwd)
    n_params = sum(p.numel() for p in base.parameters())
    print(f"model {args.model} ({n_params/1e6:.2f}M params), batch {args.batch}x{model_cfg['seq_len']}, "
          f"torch threads {args.threads}, {args.rounds} interleaved rounds x {STEPS_PER_ROUND} steps")
    print(f"machine: {describe()} (at the end; at the start {load_at_start})")
    print(f"forward+backward: {fb_s*1e3:.1f} ms (median)")
    for name, choice in choices.items():
        how = ", ".join(f"{k} {v:.2f} ms" for k, v in choice.get("times_ms", {}).items())
        print(f"{name}: {choice['value']} ({choice['source']}{': ' + how if how else ''}; "
              f"measured {choice.get('measured_at', '-')}, cache {choice.get('cache', '-')})")
    print()
    print("| algorithm | implementation | step ms | step / AdamW step | step / fwd+bwd | vs fastest peer "
          "| step CPU ms | vs fastest peer (CPU) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for algorithm in dict.fromkeys(a for a, _, _ in live):
        labels = [label for a, label, _ in live if a == algorithm]
        peers = [label for label in labels if not label.startswith("optlaw")]
        fastest = min((median[label] for label in peers), default=None)
        fastest_cpu = min((median_cpu[label] for label in peers), default=None)
        for label in labels:
            vs_peer = f"{median[label] / fastest:.2f}" if fastest else "-"
            vs_peer_cpu = f"{median_cpu[label] / fastest_cpu:.2f}" if fastest_cpu else "-"
            print(f"| {algorithm} | {label} | {median[label]*1e3:.2f} | {median[label]/adamw_s:.2f} | "
                  f"{median[label]/fb_s:.2f} | {vs_peer} | {median_cpu[label]*1e3:.2f} | {vs_peer_cpu} |")
    for algorithm, label, reason in failed:
        print(f"| {algorithm} | {label} | failed: {reason} | | | | | |")
    print()
    print("'vs fastest peer' = this step time / the fastest non-optlaw implementation of the same algorithm "
          "(medians over rounds); the CPU columns use this process's CPU time instead of wall time, which "
          "on a loaded machine leaves out the time spent waiting for a core.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
