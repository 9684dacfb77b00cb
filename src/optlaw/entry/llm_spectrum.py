"""The activation spectrum of an optlaw LLM run: the LLM stack feeding the proxy's diagnostic.

``optlaw proxy spectrum --run RUN_DIR --module NAME`` needs a trained model (config.yaml,
newest checkpoint) and its held-out split, i.e. models, data and train; the diagnostic
itself (``optlaw.proxy``) needs none of them. Combining the two is the entry layer's job,
so neither stage imports the other (docs/design.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optlaw.errors import UserError
from optlaw.proxy.spectrum import activation_spectrum


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
    if cfg.get("task", "llm") != "llm":
        raise UserError(f"{run_dir} is a {cfg.task} run; activation spectra need an LLM run")
    model = build_model(cfg.model)
    state = load_latest(run_dir)
    if state is None:
        raise UserError(f"{run_dir} has no readable checkpoint; the spectrum would be that of an untrained model")
    model.load_state_dict(state["model"])
    model.eval()
    corpus = build_corpus(cfg.data, cfg.data.get("cache_dir"))
    seq_len = int(cfg.model.seq_len)
    batch = torch.cat(list(corpus.val_batches(n_tokens, 16, seq_len)))[:, :-1]
    return activation_spectrum(model, batch, module_name)
