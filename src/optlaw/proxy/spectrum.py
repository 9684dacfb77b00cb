"""Spectra measured from a real model, for the spectral diagnostic.

``activation_spectrum`` hooks one module of any torch model and returns the
eigenvalues of the covariance of the inputs it receives (one row per token): the
feature covariance H that a preconditioner for that layer would whiten.
``run_activation_spectrum`` does this for an optlaw LLM run directory (its
config.yaml, newest checkpoint and held-out split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optlaw.errors import UserError
from optlaw.proxy.diagnostic import spectrum_from_samples


def activation_spectrum(model, input_ids, module_name: str) -> np.ndarray:
    """Eigenvalues (descending) of the covariance of ``module_name``'s input over all tokens."""
    import torch

    modules = dict(model.named_modules())
    if module_name not in modules:
        linear = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)][:4]
        raise UserError(f"module {module_name!r} not in the model; linear layers include: {', '.join(linear)}")
    captured: list[torch.Tensor] = []

    def keep_input(_module, args):
        x = args[0]
        captured.append(x.detach().reshape(-1, x.shape[-1]).to(torch.float64).cpu())

    handle = modules[module_name].register_forward_pre_hook(keep_input)
    try:
        with torch.no_grad():
            model(input_ids)
    finally:
        handle.remove()
    return spectrum_from_samples(torch.cat(captured).numpy())


def run_activation_spectrum(run_dir: str | Path, module_name: str, n_tokens: int = 8192) -> np.ndarray:
    """The activation spectrum of a trained optlaw LLM run on its held-out split."""
    import torch
    from omegaconf import OmegaConf

    from optlaw.data import build_corpus
    from optlaw.models import build_model
    from optlaw.train.checkpoint import load_latest

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir} has no config.yaml; pass the run directory of an `optlaw train` LLM run")
    cfg = OmegaConf.load(config_path)
    if cfg.task != "llm":
        raise UserError(f"{run_dir} is a {cfg.task} run; activation spectra need an LLM run")
    model = build_model(cfg.model)
    state = load_latest(run_dir)
    if state is None:
        raise UserError(f"{run_dir} has no readable checkpoint; the spectrum would be that of an untrained model")
    model.load_state_dict(state["model"])
    model.eval()
    corpus = build_corpus(cfg.data)
    seq_len = int(cfg.model.seq_len)
    batch = torch.cat(list(corpus.val_batches(n_tokens, 16, seq_len)))[:, :-1]
    return activation_spectrum(model, batch, module_name)
