"""The bracket rule of one tuned hyperparameter: from the losses tried so far, what to try next, or the verdict.

A value lives on a log2 grid around its start: position ``p`` counts *half* steps, so
value = start * 2 ** (p * step_log2 / 2) and the refinement's half steps are integers too.
The rule, applied after every round (optlaw.sweep.tuning runs it per cell):

1. The first grid is ``width`` steps on each side of the centre (positions centre +- 2k).
2. While the best sits at the lowest (highest) value tried, try one step beyond it, at most
   ``max_extensions`` steps beyond the first grid; past that the verdict is "unresolved, at
   the edge". A diverged point counts as an infinite loss, so the rule steps away from it.
   A neighbour within the threshold that is itself the outermost value tried counts as an
   edge too: the flat side may keep going down.
3. With ``refine``, once the best is interior, the half steps on each side of it are tried
   (once per coordinate).
4. Resolved: the best is interior and both neighbours are worse by more than ``threshold``
   (the seed noise or a stated tolerance). An interior best with a neighbour within the
   threshold and a worse value beyond it is finished but unresolved ("flat"): more points
   at that noise level cannot separate them.

Pure: positions and losses in, a ``Verdict`` out; nothing here knows about runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class BracketRule:
    """The grid and the limits of one tuned key (from optlaw.config.tuning.TunedHyperparameterConfig)."""

    width: int = 1
    max_extensions: int = 4
    refine: bool = False

    def first_grid(self, centre: int = 0) -> list[int]:
        return [centre + 2 * k for k in range(-self.width, self.width + 1)]

    def limits(self, centre: int = 0) -> tuple[int, int]:
        reach = 2 * (self.width + self.max_extensions)
        return centre - reach, centre + reach


@dataclass(frozen=True)
class Verdict:
    """What the losses so far say: positions to try next, or a finished (resolved or not) bracket."""

    proposals: tuple[int, ...]
    best: int | None                       # position of the lowest finite loss (None: every point diverged)
    bracket: tuple[int, int] | None        # the tried positions next to the best (None when it sits at an edge)
    resolved: bool
    at_edge: bool                          # the best is the lowest or the highest value tried
    reason: str

    @property
    def finished(self) -> bool:
        return not self.proposals


def decide(losses: Mapping[int, float], rule: BracketRule, threshold: float = 0.0, centre: int = 0) -> Verdict:
    """The verdict on ``losses`` (position -> mean loss, ``inf`` for a diverged point), every one finished."""
    if not losses:
        return Verdict(tuple(rule.first_grid(centre)), None, None, False, False, "first grid")
    tried = sorted(losses)
    low_limit, high_limit = rule.limits(centre)
    finite = {p: loss for p, loss in losses.items() if math.isfinite(loss)}
    if not finite:
        step_down = tried[0] - 2
        if step_down >= low_limit:
            return Verdict((step_down,), None, None, False, True, "every value tried diverged: stepping down")
        return Verdict((), None, None, False, True, "every value tried diverged, down to the extension limit")
    # Ties go to the value nearest the centre, then the lower one: a deterministic choice.
    best = min(finite, key=lambda p: (finite[p], abs(p - centre), p))
    left = [p for p in tried if p < best]
    right = [p for p in tried if p > best]
    if not left:
        return _extend(best, -1, low_limit, "lower")
    if not right:
        return _extend(best, +1, high_limit, "upper")
    if rule.refine and not any((p - centre) % 2 for p in tried):
        return Verdict((best - 1, best + 1), best, (left[-1], right[0]), False, False, "best interior: refining with half steps")
    below, above = left[-1], right[0]
    flat_below = not losses[below] > finite[best] + threshold
    flat_above = not losses[above] > finite[best] + threshold
    if not flat_below and not flat_above:
        return Verdict((), best, (below, above), True, False,
                       f"best interior, both neighbours worse by more than {threshold:.3g}")
    # A flat neighbour that is the outermost value tried: the loss may keep falling that way.
    if flat_below and below == tried[0]:
        return _extend(below, -1, low_limit, "lower", best=best, flat=True)
    if flat_above and above == tried[-1]:
        return _extend(above, +1, high_limit, "upper", best=best, flat=True)
    flat = below if flat_below else above
    return Verdict((), best, (below, above), False, False,
                   f"flat: the neighbour at position {flat} is within {threshold:.3g} of the best")


def _extend(edge: int, direction: int, limit: int, side: str, best: int | None = None, flat: bool = False) -> Verdict:
    best = edge if best is None else best
    nxt = edge + 2 * direction
    why = f"a neighbour within the threshold sits at the {side} edge" if flat else f"best at the {side} edge"
    if (nxt >= limit) if direction < 0 else (nxt <= limit):
        return Verdict((nxt,), best, None, False, not flat, f"{why}: extending")
    return Verdict((), best, None, False, not flat, f"{why} after the last allowed extension (max_extensions)")
