"""Shampoo against a dense reference, SOAP against Adam, Muon against torch's Muon."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import fractional_matrix_power

from optlaw.optim.muon import OptlawMuon
from optlaw.optim.shampoo import Shampoo


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: threads only add overhead on CI's 2 shared cores
    yield
    torch.set_num_threads(threads)


def _inv_fourth_root(stat: np.ndarray, eps: float) -> np.ndarray:
    return np.real(fractional_matrix_power(stat + eps * np.eye(len(stat)), -0.25))


def dense_shampoo(w0, grads, *, lr, betas, eps, graft_eps, wd, block_size, freq, start, nesterov):
    """Shampoo by the book in float64, one block at a time, no batching or padding tricks."""
    b1, b2 = betas
    m_rows, n_cols = w0.shape

    def cuts(size):
        n_blocks = -(-size // block_size)
        width = -(-size // n_blocks)
        return [slice(i * width, min((i + 1) * width, size)) for i in range(n_blocks)]

    blocks = [(r, c) for r in cuts(m_rows) for c in cuts(n_cols)]
    w = w0.astype(np.float64).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    left = [np.zeros((b[0].stop - b[0].start,) * 2) for b in blocks]
    right = [np.zeros((b[1].stop - b[1].start,) * 2) for b in blocks]
    roots = []
    trajectory = []
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        for i, b in enumerate(blocks):
            gb = g[b]
            left[i] = b2 * left[i] + (1 - b2) * gb @ gb.T
            right[i] = b2 * right[i] + (1 - b2) * gb.T @ gb
        direction = ((b1 * m + (1 - b1) * g) if nesterov else m) / (1 - b1**t)
        adam = direction / (np.sqrt(v / (1 - b2**t)) + graft_eps)
        if t >= start:
            if (t - start) % freq == 0:
                roots = [(_inv_fourth_root(left[i] / (1 - b2**t), eps), _inv_fourth_root(right[i] / (1 - b2**t), eps))
                         for i in range(len(blocks))]
            update = np.zeros_like(w)
            for i, b in enumerate(blocks):
                preconditioned = roots[i][0] @ direction[b] @ roots[i][1]
                update[b] = preconditioned * np.linalg.norm(adam[b]) / np.linalg.norm(preconditioned)
        else:
            update = adam
        w = w * (1 - lr * wd) - lr * update
        trajectory.append(w.copy())
    return trajectory


@pytest.mark.parametrize(
    ("shape", "block_size", "freq", "start", "nesterov", "root_dtype"),
    [
        ((6, 4), 64, 1, 1, False, "float64"),   # whole matrix, roots every step
        ((6, 4), 64, 2, 2, True, "float64"),    # Adam on step 1, stale roots between refreshes, Nesterov
        ((6, 8), 4, 1, 1, False, "float64"),    # 2 x 2 blocks of 3 x 4
        ((5, 7), 4, 3, 2, False, "float64"),    # uneven sides: zero-padded blocks must not change the update
        ((5, 7), 4, 1, 1, False, "float32"),    # the default root precision
    ],
)
def test_shampoo_matches_dense_computation(shape, block_size, freq, start, nesterov, root_dtype):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(6)]
    hp = dict(lr=0.05, betas=(0.9, 0.95), eps=1e-4, graft_eps=1e-8, wd=0.1)
    expected = dense_shampoo(w0, grads, block_size=block_size, freq=freq, start=start, nesterov=nesterov, **hp)

    param = torch.nn.Parameter(torch.tensor(w0))
    opt = Shampoo([param], lr=hp["lr"], betas=hp["betas"], epsilon=hp["eps"], grafting_epsilon=hp["graft_eps"],
                  weight_decay=hp["wd"], block_size=block_size, precondition_frequency=freq,
                  start_preconditioning_step=start, nesterov=nesterov, root_dtype=root_dtype)
    for g, w_expected in zip(grads, expected):
        param.grad = torch.tensor(g)
        opt.step()
        tolerance = 2e-5 if root_dtype == "float64" else 2e-4
        np.testing.assert_allclose(param.detach().numpy(), w_expected, rtol=tolerance, atol=tolerance / 10)


def test_shampoo_direction_differs_from_adam_once_preconditioning():
    # Guards the dense test against a degenerate pass (e.g. preconditioner silently off).
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((6, 4)).astype(np.float32)
    grads = [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(3)]
    params = [torch.nn.Parameter(torch.tensor(w0)) for _ in range(2)]
    shampoo = Shampoo([params[0]], lr=0.05, betas=(0.9, 0.95), epsilon=1e-4, start_preconditioning_step=1, precondition_frequency=1)
    adam = torch.optim.Adam([params[1]], lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    for g in grads:
        for p, opt in zip(params, (shampoo, adam)):
            p.grad = torch.tensor(g)
            opt.step()
    assert not torch.allclose(params[0], params[1], atol=1e-4)


def test_shampoo_refuses_non_matrices():
    with pytest.raises(ValueError, match="2-D matrices only"):
        Shampoo([torch.nn.Parameter(torch.zeros(3))])


def _soap_and_adam(force_identity: bool):
    from pytorch_optimizer import SOAP

    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((6, 4)).astype(np.float32)
    grads = [torch.tensor(rng.standard_normal((6, 4)).astype(np.float32)) for _ in range(7)]
    soap_param, adam_param = torch.nn.Parameter(torch.tensor(w0)), torch.nn.Parameter(torch.tensor(w0))
    soap = SOAP([soap_param], lr=0.01, betas=(0.9, 0.95), weight_decay=0.0, eps=1e-8, precondition_frequency=10**9)
    adam = torch.optim.Adam([adam_param], lr=0.01, betas=(0.9, 0.95), eps=1e-8)
    soap_param.grad = grads[0]
    soap.step()  # SOAP's first step only builds the eigenbasis; the weights do not move
    assert torch.equal(soap_param.detach(), torch.tensor(w0))
    state = soap.state[soap_param]
    if force_identity:
        state["Q"] = [torch.eye(6), torch.eye(4)]
    for g in grads[1:]:
        soap_param.grad, adam_param.grad = g.clone(), g.clone()
        soap.step()
        adam.step()
    return soap_param.detach(), adam_param.detach(), state


def test_soap_equals_adam_when_the_eigenbasis_is_the_identity():
    soap_w, adam_w, _ = _soap_and_adam(force_identity=True)
    torch.testing.assert_close(soap_w, adam_w, rtol=1e-6, atol=1e-7)


def test_soap_differs_from_adam_in_its_own_eigenbasis():
    soap_w, adam_w, state = _soap_and_adam(force_identity=False)
    assert not torch.allclose(soap_w, adam_w, atol=1e-4)
    # ...and that basis does diagonalise the left statistic it was built from (first-step GG^T, fixed since).
    q_left = state["Q"][0]
    assert torch.allclose(q_left.T @ q_left, torch.eye(6), atol=1e-5)


def test_muon_with_bf16_newton_schulz_is_torch_muon_bit_for_bit():
    torch.manual_seed(0)
    w0 = torch.randn(16, 8)
    grads = [torch.randn(16, 8) for _ in range(4)]
    params = [torch.nn.Parameter(w0.clone()) for _ in range(3)]
    kwargs = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, adjust_lr_fn="match_rms_adamw")
    ours_bf16 = OptlawMuon([params[0]], ns_dtype=torch.bfloat16, **kwargs)
    reference = torch.optim.Muon([params[1]], **kwargs)
    ours_fp32 = OptlawMuon([params[2]], ns_dtype=torch.float32, **kwargs)
    for g in grads:
        for p, opt in zip(params, (ours_bf16, reference, ours_fp32)):
            p.grad = g.clone()
            opt.step()
    assert torch.equal(params[0], params[1])
    # fp32 Newton-Schulz: same algorithm, only rounding differs from the bf16 reference.
    assert not torch.equal(params[2], params[1])
    torch.testing.assert_close(params[2], params[1], rtol=0, atol=0.02 * 4 * 0.2 * 4 * 0.05)
