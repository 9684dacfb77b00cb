"""Spectra measured from a real optlaw model and the `optlaw proxy spectrum` command."""

import numpy as np
import pytest

from optlaw.entry import cli
from optlaw.errors import UserError


def test_activation_spectrum_of_a_real_model_layer():
    import torch

    from optlaw.config import compose
    from optlaw.models import build_model
    from optlaw.proxy.diagnostic import estimate_s
    from optlaw.proxy.spectrum import activation_spectrum

    cfg = compose("train", ["model=llama/1m"])
    model = build_model(cfg.model)
    ids = torch.randint(0, int(cfg.model.vocab_size), (8, 64), generator=torch.Generator().manual_seed(0))
    module = "model.layers.0.mlp.down_proj"
    eig = activation_spectrum(model, ids, module)
    assert eig.shape == (int(cfg.model.ffn_hidden),)
    assert np.all(np.diff(eig) <= 1e-12) and eig[0] > 0
    assert np.isfinite(estimate_s(eig).s)
    assert not dict(model.named_modules())[module]._forward_pre_hooks  # the hook is removed
    with pytest.raises(UserError, match="not in the model"):
        activation_spectrum(model, ids, "model.layers.9.nothing")


def test_spectrum_command_estimates_s_and_predicts_shifts(tmp_path, capsys):
    path = tmp_path / "eig.npy"
    np.save(path, np.arange(1, 401, dtype=float) ** -1.5)
    assert cli.main(["proxy", "spectrum", "--input", str(path), "N_values=[16,32,64]", "input_dim=512"]) == 0
    out = capsys.readouterr().out
    assert "s_hat = 1.500" in out and "ngd" in out
    assert cli.main(["proxy", "spectrum", "--input", str(tmp_path / "missing.npy")]) == 2
    assert "not a readable .npy" in capsys.readouterr().err
    assert cli.main(["proxy", "spectrum", "--run", str(tmp_path), "--module", "x"]) == 2
    assert "config.yaml" in capsys.readouterr().err
