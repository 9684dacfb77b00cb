"""Spectra measured from a real model, for the spectral diagnostic.

``activation_spectrum`` hooks one module of any torch model and returns the
eigenvalues of the covariance of the inputs it receives (one row per token): the
feature covariance H that a preconditioner for that layer would whiten. It takes the
model as given, so the proxy stage needs none of the LLM stack; loading an optlaw LLM
run to feed it is the entry layer's job (``optlaw.entry.llm_spectrum``).
"""

from __future__ import annotations

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
