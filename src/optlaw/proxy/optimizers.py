"""The five proxy optimizers as fixed preconditioners of the curvature H.

In a quadratic problem the curvature is constant, so each idealised optimizer is
a fixed preconditioner P and the update is ``theta <- theta - eta P grad``. The
rules (``damping`` is relative to the top eigenvalue of H, so it means the same
at every model size):

- ``gd``:   P = I.
- ``diag``: P = (diag(H) + damping)^-1/2. Adam's second moment tracks the diagonal
  of the gradient covariance, which is proportional to diag(H) near the optimum;
  the square root is Adam's.
- ``kron``: P = (H + damping)^-1/4. One side of Shampoo: for a layer with input
  features, Shampoo's input-side factor is the feature covariance H, raised to -1/4.
- ``sign``: P = (H + damping)^-1/2. The idealised Muon update: the polar factor
  G (G^T G)^-1/2 of the gradient, with the gradient's second moment proportional to H
  (as near the optimum; the same argument as for Adam), is G H^-1/2.
- ``ngd``:  P = (H + damping)^-1. Damped natural gradient (Fisher = H for squared loss).

``diag`` is the only rule that is not a function of H, so it is the only one whose
effect depends on the basis the parameters live in (see docs/proxy.md).
"""

from __future__ import annotations

from optlaw.errors import UserError

# key -> power q of the spectral preconditioner (H + damping)^-q; diag is special.
PRECONDITIONER_POWER: dict[str, float] = {"gd": 0.0, "diag": 0.5, "kron": 0.25, "sign": 0.5, "ngd": 1.0}
OPTIMIZERS: tuple[str, ...] = ("gd", "diag", "kron", "sign", "ngd")


def check_optimizer(name: str) -> str:
    if name not in PRECONDITIONER_POWER:
        raise UserError(f"unknown proxy optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return name


def check_optimizers(names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise UserError(f"no proxy optimizers given; choose from: {', '.join(OPTIMIZERS)}")
    return [check_optimizer(str(n)) for n in names]


def is_spectral(name: str) -> bool:
    """True when P is a function of H (commutes with it), so H's eigenbasis diagonalises the dynamics."""
    return check_optimizer(name) != "diag"
