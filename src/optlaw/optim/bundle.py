"""One object the trainer steps, whatever torch optimizers sit behind it."""

from __future__ import annotations

from typing import Any

import torch

from optlaw.errors import UserError


class OptimizerBundle:
    """The torch optimizers of one run, keyed by algorithm name (``adamw``, ``muon``...).

    ``param_groups`` lists every torch param group of every inner optimizer; each
    carries ``name`` (the routing group), ``base_lr`` (after scaling rules) and
    ``lr``, which the trainer overwrites with ``base_lr * schedule(t)``.

    An inner optimizer may decide some values itself, by measurement on this machine (Muon's
    Newton-Schulz dtype): it then has ``resolved_hyperparameters()`` (the values in use, which
    replace the config's ``auto`` in ``resolved["hyperparameters"]``), ``choices()`` (how they
    were chosen) and ``adopt_choices()``.
    """

    def __init__(
        self,
        optimizers: dict[str, torch.optim.Optimizer],
        routing_table: list[dict[str, Any]],
        resolved: dict[str, Any],
    ) -> None:
        self.optimizers = optimizers
        self.routing_table = routing_table
        self.resolved = resolved
        self._refresh_resolved()

    def _deciders(self) -> dict[str, torch.optim.Optimizer]:
        return {name: opt for name, opt in self.optimizers.items() if hasattr(opt, "choices")}

    def _refresh_resolved(self) -> None:
        hyperparameters = self.resolved.setdefault("hyperparameters", {})
        for name, opt in self._deciders().items():
            hyperparameters.setdefault(name, {}).update(opt.resolved_hyperparameters())

    def choices(self) -> dict[str, dict[str, Any]]:
        """How each value decided at build time was chosen, keyed ``<algorithm>.<name>`` (run record ``choices``)."""
        return {f"{name}.{key}": choice for name, opt in self._deciders().items() for key, choice in opt.choices().items()}

    def adopt_choices(self, choices: dict[str, dict[str, Any]]) -> None:
        """Use another bundle's ``choices()`` (DDP: every rank takes rank 0's, so all compute the same update)."""
        for name, opt in self._deciders().items():
            prefix = f"{name}."
            opt.adopt_choices({k[len(prefix):]: v for k, v in choices.items() if k.startswith(prefix)})
        self._refresh_resolved()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers.values() for group in opt.param_groups]

    @torch.no_grad()
    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python only, so ``torch.load(weights_only=True)`` reads it."""
        return {"optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("optimizers") if isinstance(state, dict) else None
        if not isinstance(saved, dict) or set(saved) != set(self.optimizers):
            found = sorted(saved) if isinstance(saved, dict) else "nothing"
            raise UserError(
                f"checkpoint holds optimizer state for {found} but this run builds {sorted(self.optimizers)}; "
                "resume with the optimizer config the checkpoint was written with"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(saved[name])
        self._refresh_resolved()  # values pinned by the checkpoint (Muon's dtype) win over this build's

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={type(v).__name__}" for k, v in self.optimizers.items())
        return f"OptimizerBundle({inner})"
