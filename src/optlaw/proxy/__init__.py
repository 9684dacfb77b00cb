"""Proxy tasks: solvable models that test optimizer scaling-law claims in minutes.

- ``random_features``: power-law random-feature regression (arXiv 2605.29387),
  the alpha-vs-spectrum study.
- ``quadratic``: a convex quadratic whose loss splits exactly into irreducible,
  approximation and optimisation error (arXiv 2602.07712).

Both are solved in closed form in an eigenbasis (linear dynamics with a fixed
preconditioner), so a full study runs on a laptop CPU. ``optlaw.proxy.point.run``
turns one grid point into the same ``run.json`` record the LLM trainer writes.
"""
