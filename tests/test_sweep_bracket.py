"""The bracket rule of one tuned key (optlaw.sweep.bracket) on loss curves given as numbers."""

from __future__ import annotations

import math

import pytest

from optlaw.sweep.bracket import BracketRule, decide

INF = math.inf


def walk(curve, rule: BracketRule, threshold: float = 0.0, centre: int = 0, limit: int = 40):
    """Run the rule to its verdict on ``curve(position)``; the positions tried per round and the verdict."""
    losses: dict[int, float] = {}
    rounds = []
    verdict = decide(losses, rule, threshold, centre)
    while not verdict.finished:
        rounds.append(verdict.proposals)
        for p in verdict.proposals:
            assert p not in losses, f"position {p} proposed twice"
            losses[p] = curve(p)
        verdict = decide(losses, rule, threshold, centre)
        assert len(rounds) < limit
    return rounds, verdict, losses


def parabola(optimum: int):
    return lambda p: 3.0 + 0.01 * (p - optimum) ** 2


def test_first_grid_is_width_steps_on_each_side_in_half_step_units():
    assert BracketRule(width=1).first_grid() == [-2, 0, 2]
    assert BracketRule(width=2).first_grid(centre=3) == [-1, 1, 3, 5, 7]
    assert decide({}, BracketRule(width=1)).proposals == (-2, 0, 2)


def test_an_interior_best_with_worse_neighbours_resolves_in_one_round():
    rounds, verdict, _ = walk(parabola(0), BracketRule())
    assert rounds == [(-2, 0, 2)]
    assert verdict.resolved and verdict.best == 0 and verdict.bracket == (-2, 2) and not verdict.at_edge


def test_a_start_16x_too_low_extends_one_step_per_round_and_ends_interior():
    # 16x = 4 steps of 2x = position 8 in half steps.
    rounds, verdict, losses = walk(parabola(8), BracketRule(width=1, max_extensions=4))
    assert rounds == [(-2, 0, 2), (4,), (6,), (8,), (10,)]
    assert verdict.resolved and verdict.best == 8 and verdict.bracket == (6, 10)


def test_the_extension_limit_ends_the_cell_unresolved_at_the_edge():
    rounds, verdict, _ = walk(parabola(20), BracketRule(width=1, max_extensions=2))
    assert rounds == [(-2, 0, 2), (4,), (6,)]
    assert not verdict.resolved and verdict.at_edge and verdict.best == 6 and verdict.bracket is None
    assert "max_extensions" in verdict.reason


def test_extension_goes_down_too_and_a_diverged_point_counts_as_worse():
    rounds, verdict, _ = walk(lambda p: INF if p > 0 else 3.0 + 0.01 * (p + 6) ** 2, BracketRule(max_extensions=4))
    assert rounds == [(-2, 0, 2), (-4,), (-6,), (-8,)]
    assert verdict.resolved and verdict.best == -6


def test_everything_diverging_steps_down_until_the_limit():
    rounds, verdict, _ = walk(lambda p: INF, BracketRule(max_extensions=1))
    assert rounds == [(-2, 0, 2), (-4,)]
    assert verdict.best is None and not verdict.resolved
    _, verdict, _ = walk(lambda p: INF if p > -4 else 3.0 + 0.01 * (p + 6) ** 2, BracketRule(max_extensions=3))
    assert verdict.resolved and verdict.best == -6


def test_refinement_tries_the_half_steps_once_and_may_move_the_best():
    rounds, verdict, _ = walk(lambda p: 3.0 + 0.01 * (p - 0.6) ** 2, BracketRule(refine=True))
    assert rounds == [(-2, 0, 2), (-1, 1)]
    assert verdict.resolved and verdict.best == 1 and verdict.bracket == (0, 2)


def test_a_neighbour_within_the_threshold_is_flat_not_resolved():
    curve = {-2: 3.10, 0: 3.000, 2: 3.004, 4: 3.2}.get
    _, verdict, _ = walk(lambda p: curve(p, 5.0), BracketRule(max_extensions=2), threshold=0.01)
    assert not verdict.resolved and verdict.finished and "flat" in verdict.reason and not verdict.at_edge
    # With the neighbours clearly worse than the threshold, the same curve resolves.
    _, verdict, _ = walk(lambda p: curve(p, 5.0), BracketRule(max_extensions=2), threshold=0.001)
    assert verdict.resolved


def test_a_flat_neighbour_at_the_edge_extends_that_way():
    # 0 and 2 tie within the threshold and nothing was tried above 2: the loss may keep falling.
    curve = {-2: 3.2, 0: 3.000, 2: 3.002, 4: 2.90, 6: 3.0}
    rounds, verdict, _ = walk(lambda p: curve.get(p, 5.0), BracketRule(max_extensions=3), threshold=0.01)
    assert rounds == [(-2, 0, 2), (4,), (6,)]
    assert verdict.resolved and verdict.best == 4


def test_a_second_pass_centres_its_grid_and_limits_on_the_previous_winner():
    rounds, verdict, _ = walk(parabola(9), BracketRule(max_extensions=1), centre=7)
    assert rounds == [(5, 7, 9), (11,)]
    assert verdict.resolved and verdict.best == 9


@pytest.mark.parametrize("optimum", range(-10, 11))
def test_every_optimum_within_reach_is_found_exactly(optimum):
    rule = BracketRule(width=1, max_extensions=5)
    _, verdict, losses = walk(parabola(optimum), rule)
    if optimum % 2 == 0:  # on the grid: found and bracketed
        assert verdict.resolved and verdict.best == optimum
    else:                 # between two grid points that tie: the nearer to the start wins, flagged flat
        assert not verdict.resolved and "flat" in verdict.reason and abs(verdict.best - optimum) == 1
    assert losses[verdict.best] == min(losses.values())
