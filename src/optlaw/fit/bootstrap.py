"""Bootstrap refits that can move coefficients onto or off their bounds and leave the full-data basin.

A refit warm-started at the full-data optimum, with the full data's zero coefficients held
at zero, is fast but not honest: measured on the (Mis)Fitting data (E = 0 in the full fit),
global refits of the same resamples gave alpha in [0.0445, 0.0702] where warm refits gave
[0.0445, 0.0556], and 7% of warm refits stopped above the replicate's global optimum. So
every replicate r (weights = its resampling counts), all replicates batched, goes through:

1. Warm refit: the batched polish from the full-data optimum (``descend``).
2. Screen on the exponent grid of the global solve (``solver.Landscape``): the replicate's
   objective at every node with feasible coefficients, i.e. an upper bound of its profile
   there. Problems with at most ``SMALL_COEF`` coefficients (a separate law) get their
   coefficients projected per replicate and node, as the global solve scores its grid
   (relative least squares, non-negative, solved exactly by enumerating supports); larger
   ones (the shared law) reuse the full data's coefficients at each node (one matrix
   product). Any node whose feasible point beats the warm refit (which is then provably not
   the replicate's optimum) is polished as a start. A small problem whose warm refits show
   a reason to doubt them (``multistart_reasons``: a coefficient on a bound, exponents
   spread over more than one grid step, a near-minimal design, ...) instead polishes its
   best ``EXTRA_STARTS`` nodes outside the warm solution's grid region, per replicate: the
   global solve's multi-start.
3. Bounds: at the replicate's exponents a projected Gauss-Newton on the raw coefficients
   c >= 0 puts a coefficient at zero exactly, or releases one held at zero whose gradient
   points inside (a KKT check). A replicate whose set of zero coefficients changed is
   polished again (``descend``).

What this guarantees: every replicate ends at a point where no coefficient can move off or
onto its bound with gain (KKT in c), and no grid node's feasible point beats it. For small
problems with a reason to doubt, it is the global solve's multi-start applied per replicate:
on the (Mis)Fitting data (E = 0 in the full fit, 200 replicates) every replicate ended within
1e-8 of a fresh global solve of the same resample, and the alpha interval matched the global
refits' to 4 digits ([0.04446, 0.07023] both). For the shared law (many coefficients) the
replicates are local refits: a replicate can develop a second basin the warm refit does not
reach. A per-replicate multi-start would cost about three times the bootstrap (measured), so
a pilot of ``PILOT`` replicates decides it (``_large_problem_starts``). Measured against fresh
global solves of the same resamples: Marin, the pilot found no lower basin (and 0 of 43 checked
replicates were lower); synthetic 3-optimizer data at 1% noise, 2 of 100 replicates were lower
(up to 1.6%), which moved interval ends by up to 2.3% when no pilot replicate caught them.
tests/test_fit_bootstrap.py checks all of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from optlaw.fit import solver
from optlaw.fit.normal_equations import NormalEquations

SMALL_COEF = 4          # up to here coefficients are projected per replicate and node
EXTRA_STARTS = 2        # small problems: grid starts per replicate besides the warm start
NEAR_MINIMAL_MARGIN = 3  # fewer cells than parameters + this: a near-minimal design
MAX_SCREEN_STARTS = 2   # small problems without doubt: at most this many grid starts that beat the warm refit
LARGE_EXTRA_STARTS = 2  # large problems: grid starts per replicate when the pilot finds other basins
# Large problems: replicates that try grid starts first. 100 detects other basins reached by 3%
# of replicates with probability 0.95; rarer ones can stay unseen (measured effect below).
PILOT = 100
PILOT_GAIN = 1e-4       # a pilot start lower by more than this share of the objective: other basins exist
JOINT_ITER = 30         # small problems: joint polish steps before variable projection takes over
BOUND_ROUNDS = 3
VARPRO_MAX_ITER = 60
# Variable projection's stopping tolerance relative to the polish's: in a flat valley a step
# gaining 1e-6 of the objective still left replicates up to 3e-5 above their optimum (measured).
VARPRO_RTOL_FACTOR = 1e-3
VARPRO_TRIES = 8
VARPRO_SETTLE_ITER = 8  # coefficient steps per exponent step (the next exponent step goes on from there)
# Elements of one (replicates x nodes x points) block of the small-problem screen (memory).
SCREEN_BLOCK = 2_000_000


@dataclass(frozen=True)
class Refits:
    """Bootstrap refits: theta (R, 2 + n_coef) = (alpha, beta, log c), log 0 = -inf; what moved."""

    theta: np.ndarray
    objective: np.ndarray
    left_warm_basin: np.ndarray      # (R,) bool: a grid start beat the warm refit
    bound_changed: np.ndarray        # (R,) bool: the set of zero coefficients differs from the full fit's
    n_grid_starts: int               # extra polish starts run over all replicates
    multistart_reasons: tuple[str, ...] = ()   # why every replicate got the multi-start (small problems)

    @property
    def coef(self) -> np.ndarray:
        return np.exp(self.theta[:, 2:])


def refit(sol: solver.Solution, p: solver.Problem, counts: np.ndarray, max_iter: int = solver.POLISH_MAX_ITER,
          rtol: float = solver.BOOTSTRAP_RTOL) -> Refits:
    """Refit every replicate of ``counts`` (R, n) honestly (see the module docstring)."""
    W = np.asarray(counts, dtype=float)
    R = len(W)
    active = sol.coef > 0
    theta0 = np.concatenate([[sol.alpha, sol.beta], np.log(np.where(active, sol.coef, 1.0))])
    theta0[2:][~active] = -np.inf
    theta, f = descend(np.repeat(theta0[None], R, axis=0), p, W, max_iter, rtol)
    left = np.zeros(R, dtype=bool)
    n_starts = 0
    reasons = multistart_reasons(sol, p, theta)
    land = sol.landscape
    if land is not None:
        small = p.structure.n_coef <= SMALL_COEF
        if small:
            rows, starts = _grid_starts(theta, f, p, W, land, multistart=bool(reasons))
        else:
            rows, starts, pilot_note = _large_problem_starts(theta, f, p, W, land, max_iter, rtol)
            reasons.append(pilot_note)
        n_starts = len(rows)
        if n_starts:
            st_theta, st_f = descend(starts, p, W[rows], max_iter, rtol)
            _keep_better(theta, f, left, rows, st_theta, st_f)
    changed = np.any(np.isfinite(theta[:, 2:]) != active[None, :], axis=1)
    return Refits(theta=theta, objective=f, left_warm_basin=left, bound_changed=changed, n_grid_starts=n_starts,
                  multistart_reasons=tuple(reasons))


def _keep_better(theta, f, left, rows, st_theta, st_f) -> None:
    """Each replicate keeps the lowest of its warm refit and its extra starts (in place)."""
    for i in np.argsort(st_f)[::-1]:   # best last: it is the one kept for its replicate
        r = rows[i]
        if st_f[i] < f[r] * (1 - 1e-12):
            theta[r], f[r], left[r] = st_theta[i], st_f[i], True


def _large_problem_starts(theta, f, p, W, land, max_iter, rtol) -> tuple[np.ndarray, np.ndarray, str]:
    """The shared law's extra starts, decided by a pilot.

    Its warm refits can miss a second basin that only a resample develops (measured against
    fresh global solves: synthetic 3-optimizer data at 1% noise, 2 of 100 replicates, up to 1.6%
    lower; Marin, none of 1000 pilot-checked), and starting every replicate from grid nodes
    costs about three times the bootstrap. So ``PILOT`` evenly spaced replicates try
    ``LARGE_EXTRA_STARTS`` nodes each first (ranked by the replicate's objective with the full
    data's coefficients there, the node nearest its warm solution left out); only if one of
    them finds a basin lower by more than ``PILOT_GAIN`` do all replicates get the same starts.
    """
    R = len(W)
    scores = _upper_bounds(p, W, land)
    pilot = np.unique(np.linspace(0, R - 1, min(R, PILOT)).round().astype(int))
    rows, starts = _node_starts(theta[pilot], scores[pilot], land, LARGE_EXTRA_STARTS)
    rows = pilot[rows]
    st_theta, st_f = descend(starts, p, W[rows], max_iter, rtol)
    found = st_f < f[rows] * (1 - PILOT_GAIN)
    left = np.zeros(R, dtype=bool)
    _keep_better(theta, f, left, rows, st_theta, st_f)
    if not found.any():
        return np.zeros(0, dtype=int), np.zeros((0, theta.shape[1])), (
            f"pilot: grid starts on {len(pilot)} replicates found no lower basin, so the others were not multi-started")
    rest = np.setdiff1d(np.arange(R), pilot)
    more_rows, more = _node_starts(theta[rest], scores[rest], land, LARGE_EXTRA_STARTS)
    return rest[more_rows], more, (f"pilot: grid starts lowered {int(found.sum())} of {len(pilot)} pilot replicates "
                                   f"by more than {PILOT_GAIN:g}, so every replicate was multi-started")


def _node_starts(theta: np.ndarray, scores: np.ndarray, land: solver.Landscape, k: int):
    """Per row the ``k`` best-scoring nodes other than the one nearest its solution, with the
    full data's coefficients there."""
    node_i = _cell_index(land.nodes[:, 0], land.grid)
    node_j = _cell_index(land.nodes[:, 1], land.grid)
    warm_i = _cell_index(np.clip(theta[:, 0], land.grid[0], land.grid[-1]), land.grid)
    warm_j = _cell_index(np.clip(theta[:, 1], land.grid[0], land.grid[-1]), land.grid)
    rows, starts = [], []
    with np.errstate(divide="ignore"):
        logc = np.where(land.coef > 0, np.log(np.where(land.coef > 0, land.coef, 1.0)), -np.inf)
    for r, order in enumerate(np.argsort(scores, axis=1)):
        picked = [g for g in order[:k + 1] if not (node_i[g] == warm_i[r] and node_j[g] == warm_j[r])][:k]
        for g in picked:
            rows.append(r)
            starts.append(np.concatenate([land.nodes[g], logc[g]]))
    return np.array(rows, dtype=int), np.array(starts).reshape(len(rows), theta.shape[1])


def multistart_reasons(sol: solver.Solution, p: solver.Problem, theta: np.ndarray) -> list[str]:
    """Why the warm refits cannot be trusted to be each replicate's global optimum (empty: they can,
    up to the screen). Any reason sends a small problem through the per-replicate multi-start."""
    reasons = []
    if sol.on_bound:
        reasons.append("the full-data fit has " + "; ".join(sol.on_bound))
    zero = ~np.isfinite(theta[:, 2:])
    if np.any(zero != (sol.coef <= 0)[None, :]):
        reasons.append(f"{np.mean(np.any(zero != (sol.coef <= 0), axis=1)):.0%} of warm refits moved a "
                       "coefficient onto or off zero")
    lo, hi = p.exponent_bounds
    if np.any((theta[:, :2] <= lo * (1 + solver.BOUND_TOL)) | (theta[:, :2] >= hi * (1 - solver.BOUND_TOL))):
        reasons.append("some warm refits reached an exponent's search bound")
    n_params = 2 + p.structure.n_coef
    cells = len(np.unique(np.stack([p.logN, p.logD, p.structure.a_group, p.structure.b_group], axis=1), axis=0))
    if cells < n_params + NEAR_MINIMAL_MARGIN:
        reasons.append(f"{cells} cells for {n_params} parameters")
    if sol.landscape is not None:
        step = np.log(sol.landscape.grid[1] / sol.landscape.grid[0])
        spread = np.subtract(*np.percentile(np.log(theta[:, :2]), [97.5, 2.5], axis=0))
        if np.any(spread > step):
            reasons.append("the warm refits' exponents spread over more than one grid step")
    return reasons


def descend(theta: np.ndarray, p: solver.Problem, W: np.ndarray, max_iter: int = solver.POLISH_MAX_ITER,
            rtol: float = solver.BOOTSTRAP_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """Local refits of rows theta (R, 2 + n_coef): joint polish and bound steps, and for small
    problems variable projection where the joint polish crawls.

    The joint polish in (alpha, beta, log c) is cheap per step but crawls along curved valleys
    (measured on (Mis)Fitting replicates, where E, A and alpha trade off: hundreds of steps,
    and it stopped up to 3e-5 above the replicate's optimum). For small problems ``varpro``
    takes over after ``JOINT_ITER`` steps: it steps in the exponents only and re-projects the
    coefficients, which follows the valley. For the shared law (many coefficients) the inexact
    re-projection made it stop early (measured on Marin: up to 0.3% above the optimum), so
    there the joint polish runs to convergence. Between them, bound steps put a coefficient
    at zero exactly or release a held one; a row whose zeros changed is polished again.
    """
    theta = np.array(theta, dtype=float)
    small = p.structure.n_coef <= SMALL_COEF
    th, f, _, still = solver.polish_rows(theta, p, W, np.isfinite(theta[:, 2:]),
                                         JOINT_ITER if small else max_iter, rtol)
    rows = np.arange(len(th))
    for _ in range(BOUND_ROUNDS):
        zero_before = ~np.isfinite(th[rows, 2:])
        th[rows], f[rows] = solver.settle_coefficients(th[rows], f[rows], p, W[rows], bounds_only=True)
        moved = np.any(~np.isfinite(th[rows, 2:]) != zero_before, axis=1)
        rows = rows[moved | (still[rows] if small else False)]
        if rows.size == 0:
            break
        if small:
            th[rows], f[rows] = varpro(th[rows], f[rows], p, W[rows], max_iter, rtol * VARPRO_RTOL_FACTOR)
            still[rows] = False
        else:
            th[rows], f[rows], _, _ = solver.polish_rows(th[rows], p, W[rows], np.isfinite(th[rows, 2:]),
                                                         max_iter, rtol)
    return th, f


def varpro(theta: np.ndarray, f: np.ndarray, p: solver.Problem, W: np.ndarray, max_iter: int = VARPRO_MAX_ITER,
           rtol: float = solver.BOOTSTRAP_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """Variable projection, batched: a damped Gauss-Newton step in (alpha, beta) alone, then the
    coefficients re-projected at the new exponents (``settle_coefficients``, bounds included).

    The exponent step is the joint Gauss-Newton step's (alpha, beta) part: at projected
    coefficients their gradient is zero, so it equals the step of the reduced (Schur
    complement) system, Kaufman's approximation to the variable-projection Gauss-Newton step.
    """
    theta, f = theta.copy(), f.copy()
    R = len(theta)
    s = p.structure
    eq = NormalEquations(p.n, s.a_group, s.b_group, s.n_a, s.n_b)
    lo, hi = p.exponent_bounds
    mu = np.full(R, solver.MARQUARDT_INITIAL)
    running = np.ones(R, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(running)
        if idx.size == 0:
            break
        th, w = theta[idx], W[idx]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            J5, u, r = solver.gauss_newton_terms(th, p, w)
        free = np.concatenate([np.ones((len(idx), 2), dtype=bool), np.isfinite(th[:, 2:])], axis=1)
        system = eq.assemble(J5, u, r, free)
        accepted = np.zeros(len(idx), dtype=bool)
        first_try = np.zeros(len(idx), dtype=bool)
        new_th, new_f, mu_row = th.copy(), f[idx].copy(), mu[idx]
        for attempt in range(VARPRO_TRIES):
            todo = np.flatnonzero(~accepted)
            if todo.size == 0:
                break
            trial = th[todo].copy()
            trial[:, :2] = np.clip(trial[:, :2] + system.step(todo, mu_row[todo])[:, :2], lo, hi)
            trial, ft = solver.settle_coefficients(trial, solver.objective_batch(trial, p, w[todo]), p, w[todo],
                                                   VARPRO_SETTLE_ITER, 1e-10)
            ok = np.isfinite(ft) & (ft < f[idx[todo]])
            new_th[todo[ok]], new_f[todo[ok]] = trial[ok], ft[ok]
            accepted[todo[ok]] = True
            first_try[todo[ok]] = attempt == 0
            mu_row[todo[~ok]] = np.maximum(mu_row[todo[~ok]] * 10.0, 1e-6)
        mu[idx] = np.where(first_try, np.maximum(mu_row / 3.0, solver.MARQUARDT_MIN), mu_row)
        gain = f[idx] - new_f
        theta[idx], f[idx] = new_th, new_f
        running[idx[~accepted | (gain <= rtol * np.abs(new_f))]] = False
    return theta, f


# ----------------------------------------------------------------------------- screen

def _cell_index(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.abs(np.log(np.asarray(values))[..., None] - np.log(grid)).argmin(axis=-1)


def _grid_starts(theta: np.ndarray, f: np.ndarray, p: solver.Problem, W: np.ndarray, land: solver.Landscape,
                 multistart: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows (replicate index per start) and starting thetas of the extra grid starts: with
    ``multistart`` (small problems only) the best nodes in distinct grid regions, else only
    nodes whose feasible point beats the warm refit."""
    small = p.structure.n_coef <= SMALL_COEF
    multistart = multistart and small
    scores, coefs = (_projected_scores(p, W, land.nodes) if small else (_upper_bounds(p, W, land), None))
    node_i = _cell_index(land.nodes[:, 0], land.grid)
    node_j = _cell_index(land.nodes[:, 1], land.grid)
    warm_i = _cell_index(np.clip(theta[:, 0], land.grid[0], land.grid[-1]), land.grid)
    warm_j = _cell_index(np.clip(theta[:, 1], land.grid[0], land.grid[-1]), land.grid)
    limit = EXTRA_STARTS if multistart else MAX_SCREEN_STARTS
    rows, starts = [], []
    order = np.argsort(scores, axis=1)
    for r in range(len(W)):
        taken = [(warm_i[r], warm_j[r])]
        for g in order[r]:
            if len(taken) > limit:
                break
            if not multistart and not scores[r, g] < f[r] * (1 - 1e-9):
                break                      # sorted: no later node beats the warm refit either
            if not np.isfinite(scores[r, g]):
                break
            if any(abs(node_i[g] - i) <= 1 and abs(node_j[g] - j) <= 1 for i, j in taken):
                continue
            taken.append((node_i[g], node_j[g]))
            c = coefs[r, g] if small else land.coef[g]
            with np.errstate(divide="ignore"):
                starts.append(np.concatenate([land.nodes[g], np.where(c > 0, np.log(c), -np.inf)]))
            rows.append(r)
    if not rows:
        return np.zeros(0, dtype=int), np.zeros((0, theta.shape[1]))
    return np.array(rows), np.array(starts)


def _upper_bounds(p: solver.Problem, W: np.ndarray, land: solver.Landscape) -> np.ndarray:
    """(R, G): each replicate's objective at each node with the full data's coefficients there."""
    terms = np.empty((len(land.nodes), p.n))
    for g, ((a, b), c) in enumerate(zip(land.nodes, land.coef)):
        terms[g] = solver.loss_terms(solver.design(a, b, p) @ c, p)
    terms[~np.isfinite(terms)] = np.inf
    with np.errstate(invalid="ignore"):
        out = W @ terms.T
    return np.where(np.isnan(out), np.inf, out)


def _projected_scores(p: solver.Problem, W: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, G) objective and (R, G, P) coefficients: per replicate and node, the coefficients of the
    global solve's grid score (relative least squares for huber_log, least squares for squared,
    c >= 0), solved exactly by enumerating supports."""
    X = np.stack([solver.design(a, b, p) for a, b in nodes])              # (G, n, P)
    if p.objective == "squared":
        scale, target = np.ones(p.n), p.loss
    else:
        scale, target = 1.0 / p.loss, np.ones(p.n)
    Z = X * scale[None, :, None]
    G, n, P = Z.shape
    gram_terms = np.einsum("gnj,gnk->ngjk", Z, Z).reshape(n, -1)          # (n, G P P)
    rhs_terms = (Z * target[None, :, None]).transpose(1, 0, 2).reshape(n, -1)
    R = len(W)
    scores, coefs = np.empty((R, G)), np.empty((R, G, P))
    block = max(1, SCREEN_BLOCK // (G * n))
    for lo in range(0, R, block):
        w = W[lo:lo + block]
        gram = (w @ gram_terms).reshape(len(w), G, P, P)
        rhs = (w @ rhs_terms).reshape(len(w), G, P)
        c = _nnls_by_supports(gram, rhs)
        pred = np.einsum("rgp,gnp->rgn", c, X)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = solver.loss_terms(pred, p)
        s = np.einsum("rgn,rn->rg", np.where(np.isfinite(terms), terms, np.inf), w)
        scores[lo:lo + block] = np.where(np.isnan(s), np.inf, s)
        coefs[lo:lo + block] = c
    return scores, coefs


def _nnls_by_supports(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """argmin_{c >= 0} c'Gc - 2 b'c for stacks of small P x P problems.

    The optimum is the unconstrained optimum on its own support, so the best feasible one of
    the 2^P - 1 supports is exact; batched closed-form-size solves beat a Python NNLS loop.
    """
    P = gram.shape[-1]
    best_q = np.full(gram.shape[:-2], np.inf)
    best = np.zeros(gram.shape[:-1])
    ridge = 1e-12 * np.einsum("...ii->...", gram)[..., None, None] * np.eye(1)
    for k in range(1, P + 1):
        for support in combinations(range(P), k):
            idx = list(support)
            g = gram[..., idx, :][..., :, idx] + ridge * np.eye(k)
            b = rhs[..., idx]
            with np.errstate(all="ignore"):
                try:
                    c = np.linalg.solve(g, b[..., None])[..., 0]
                except np.linalg.LinAlgError:
                    c = np.einsum("...ij,...j->...i", np.linalg.pinv(g), b)
                q = -np.einsum("...i,...i->...", b, c)        # c'Gc - 2b'c at the support's optimum
            ok = np.all(c >= 0, axis=-1) & np.isfinite(q) & (q < best_q)
            best_q = np.where(ok, q, best_q)
            full = np.zeros(gram.shape[:-1])
            full[..., idx] = np.where(np.isfinite(c), c, 0.0)
            best = np.where(ok[..., None], full, best)
    return best


# ----------------------------------------------------------------------------- bounds
