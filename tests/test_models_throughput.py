"""Throughput options of the model give the same numbers as the plain path: chunked loss,
per-block torch.compile, activation checkpointing (CPU here; CUDA paths in scripts/gpu_check.py)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from optlaw.config import config_dir
from optlaw.models import build_model, checkpoint_activations, compile_blocks, linear_cross_entropy
from optlaw.models.loss import resolve_loss_impl


def _tiny_llama():
    cfg = OmegaConf.load(config_dir() / "model" / "llama" / "100k.yaml")
    torch.manual_seed(0)
    return build_model(cfg), cfg


def _full_ce(h, w, t, reduction="mean"):
    logits = F.linear(h, w)
    logits = logits.float() if logits.dtype == torch.bfloat16 else logits  # the trainer's old loss: fp32 softmax
    return F.cross_entropy(logits.reshape(-1, w.size(0)), t.reshape(-1), reduction=reduction)


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_loss_equals_full_cross_entropy_in_value_and_gradient(chunk_rows, reduction):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 21, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (3, 21), generator=g)
    ref = _full_ce(h, w, t, reduction)
    gh_ref, gw_ref = torch.autograd.grad(ref * 1.7, (h, w))  # a non-unit upstream gradient too
    got = linear_cross_entropy(h, w, t, impl="chunked", chunk_rows=chunk_rows, reduction=reduction)
    gh, gw = torch.autograd.grad(got * 1.7, (h, w))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gh, gh_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # evaluation: no gradients kept
        torch.testing.assert_close(linear_cross_entropy(h, w, t, impl="chunked", chunk_rows=chunk_rows, reduction=reduction), ref)


def test_chunked_loss_under_bf16_autocast_is_close_to_full():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(256, 32, generator=g, requires_grad=True)
    w = (0.1 * torch.randn(300, 32, generator=g)).requires_grad_()
    t = torch.randint(0, 300, (256,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _full_ce(h, w, t)
        got = linear_cross_entropy(h, w, t, impl="chunked", chunk_rows=50)
    gh_ref, gw_ref = torch.autograd.grad(ref, (h, w))
    gh, gw = torch.autograd.grad(got, (h, w))
    assert gh.dtype == h.dtype and gw.dtype == w.dtype
    torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(gh, gh_ref, rtol=0.05, atol=2e-4)
    torch.testing.assert_close(gw, gw_ref, rtol=0.05, atol=2e-4)


def test_model_forward_with_targets_equals_logits_then_cross_entropy():
    model, cfg = _tiny_llama()
    model.loss_chunk_rows = 10
    x = torch.randint(0, cfg.vocab_size, (2, 33))
    inputs, targets = x[:, :-1], x[:, 1:]
    logits = model(inputs).logits
    ref = F.cross_entropy(logits.float().reshape(-1, cfg.vocab_size), targets.reshape(-1))
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    out = model(inputs, targets=targets, use_cache=False)
    assert out.logits is None
    grads = torch.autograd.grad(out.loss, list(model.parameters()))
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_loss_impl_auto_is_chunked_on_cpu_and_liger_refused_without_cuda():
    assert resolve_loss_impl("auto", torch.device("cpu")) == "chunked"
    with pytest.raises(ValueError, match="liger"):
        resolve_loss_impl("liger", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown"):
        resolve_loss_impl("fast", torch.device("cpu"))


def _loss_and_grads(model, x):
    loss = model(x[:, :-1], targets=x[:, 1:], use_cache=False).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_activation_checkpointing_gives_equal_loss_and_gradients():
    model, cfg = _tiny_llama()
    x = torch.randint(0, cfg.vocab_size, (2, 17))
    ref_loss, ref_grads = _loss_and_grads(model, x)
    checkpointed = copy.deepcopy(model)
    checkpoint_activations(checkpointed)
    assert all(block.gradient_checkpointing for block in checkpointed.model.layers)
    loss, grads = _loss_and_grads(checkpointed, x)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.slow
def test_per_block_compile_builds_and_matches_eager():
    model, cfg = _tiny_llama()
    x = torch.randint(0, cfg.vocab_size, (2, 17))
    ref_loss, ref_grads = _loss_and_grads(model, x)
    compiled = copy.deepcopy(model)
    names = [n for n, _ in compiled.named_parameters()]
    assert compile_blocks(compiled) == cfg.n_layers
    assert [n for n, _ in compiled.named_parameters()] == names  # in place: routing and checkpoints unchanged
    try:
        loss, grads = _loss_and_grads(compiled, x)
    except Exception as exc:  # inductor needs a C++ compiler; say so rather than fail on a bare box
        if "compiler" in str(exc).lower() or "cxx" in str(exc).lower():
            pytest.skip(f"inductor cannot compile on this machine: {str(exc).splitlines()[0]}")
        raise
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
