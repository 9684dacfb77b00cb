"""Solving L = E + A_g(i) / N_i^alpha + B_h(i) / D_i^beta by variable projection.

One solver serves every law in optlaw: the exponents (alpha, beta) are shared by
all points, and each point picks its A and B coefficient through a group index.
A separate Chinchilla fit has one A and one B; the shared-exponent law has one
A and one B per optimizer (the rho's are ratios of those, see ``laws``); the
nested variants share A or B across optimizers.

For fixed exponents the prediction is linear in the coefficients c = (E, A..., B...) >= 0:
- squared error on raw loss: c is one non-negative least squares (NNLS) solve;
- Huber on log loss: log(X c) is not linear in c, so c comes from a short
  Gauss-Newton solve whose every step is an NNLS on the linearised, Huber-reweighted
  problem (an MM step: the quadratic with weight psi(r)/r majorises Huber at r),
  with backtracking so the objective never increases.
Exponents: a coarse grid (coefficients projected out at each node), then the best
few nodes are polished jointly by a batched damped Gauss-Newton in
theta = (alpha, beta, log c). The same batched polish, warm-started at the full-data
optimum, solves all bootstrap replicates at once (weights = resampling counts); what else a
replicate needs to be refitted honestly (bounds, other basins) is in ``optlaw.fit.bootstrap``.

Hoffmann et al. (2022)'s multi-start L-BFGS over the log-sum-exp parameterisation
is kept as a cross-check (``hoffmann_lbfgs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.special import huber, logsumexp

from optlaw.fit.normal_equations import NormalEquations

OBJECTIVES = ("huber_log", "squared")
# Hoffmann et al. 2022, appendix D.2: Huber loss with delta = 1e-3 on log loss.
HUBER_DELTA = 1e-3
# Search range of the exponents; a solution within BOUND_TOL of either end is flagged.
EXPONENT_BOUNDS = (0.01, 3.0)
BOUND_TOL = 1e-3
GRID_SIZE = 16          # nodes per exponent on the coarse grid (geometric, ratio ~1.38)
N_POLISH_STARTS = 6     # best grid nodes polished jointly
POLISH_MAX_ITER = 300
SMALL_GAIN_STEPS = 3    # a row stops after this many steps in a row gaining less than rtol
SETTLE_MAX_ITER = 40    # projected Gauss-Newton steps on the coefficients (``settle_coefficients``)
SETTLE_HALVINGS = 12
ROW_ITERATIONS = [0]    # rows x iterations the polish has run (a machine-independent cost, for benchmarks)
# Share of the IRLS curvature kept for points outside Huber's delta (see ``polish``).
HUBER_OUTSIDE_CURVATURE = 0.1
SUMS_CHUNK = 100        # rows per chunk when assembling Gauss-Newton sums (cache-sized; see _share_sums_chunked)
MARQUARDT_INITIAL, MARQUARDT_MIN, MARQUARDT_TRIES = 1e-3, 1e-9, 20
# Bootstrap refits stop when a step gains less than this share of the objective. On the
# Marin data (1000 replicates) the 95% intervals at 1e-6 and at 1e-8 agreed with a 1e-14
# reference equally well (worst endpoint 1.6% off in both), and 1e-6 is ~10% faster.
BOOTSTRAP_RTOL = 1e-6


@dataclass(frozen=True)
class Structure:
    """Which A and which B coefficient each point uses. c = (E, A_0..A_{n_a-1}, B_0..B_{n_b-1})."""

    a_group: np.ndarray
    b_group: np.ndarray
    n_a: int
    n_b: int

    @property
    def n_coef(self) -> int:
        return 1 + self.n_a + self.n_b

    def subset(self, mask: np.ndarray) -> "Structure":
        return Structure(self.a_group[mask], self.b_group[mask], self.n_a, self.n_b)


@dataclass
class Problem:
    """Data of one fit, in logs (computed once)."""

    logN: np.ndarray
    logD: np.ndarray
    loss: np.ndarray
    structure: Structure
    objective: str = "huber_log"
    delta: float = HUBER_DELTA
    exponent_bounds: tuple[float, float] = EXPONENT_BOUNDS

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")
        self.logL = np.log(self.loss)
        # Distinct sizes and budgets: N^-alpha is exponentiated once per distinct value and gathered
        # (a sweep has a handful of N and D for 10^2 points; the same numbers, fewer exp calls).
        self.uN, self.iN = np.unique(self.logN, return_inverse=True)
        self.uD, self.iD = np.unique(self.logD, return_inverse=True)
        # Each point's (A group, distinct N) and (B group, distinct D) pair: the terms A_g N^-alpha
        # are formed once per pair and gathered once (one gather per term instead of two).
        self.a_pair = self.structure.a_group * len(self.uN) + self.iN.ravel()
        self.b_pair = self.structure.b_group * len(self.uD) + self.iD.ravel()

    @property
    def n(self) -> int:
        return len(self.loss)

    def subset(self, mask: np.ndarray) -> "Problem":
        return Problem(self.logN[mask], self.logD[mask], self.loss[mask], self.structure.subset(mask),
                       self.objective, self.delta, self.exponent_bounds)


@dataclass
class Solution:
    """A solve's optimum. ``converged``/``message``: whether the solver finished (an
    iteration limit is not converged); ``on_bound``: parameters at a constraint."""

    alpha: float
    beta: float
    coef: np.ndarray
    objective_value: float
    on_bound: list[str] = field(default_factory=list)
    n_polish_iterations: int = 0
    converged: bool = True
    message: str = ""
    landscape: "Landscape | None" = None     # the exponent grid the global solve scored


@dataclass(frozen=True)
class Landscape:
    """The global solve's exponent grid: nodes (G, 2) and the coefficients projected at each
    node (G, n_coef) on the full data. The bootstrap screens each replicate on it."""

    nodes: np.ndarray
    coef: np.ndarray
    grid: np.ndarray          # the 1-D exponent grid the nodes are the product of


# ----------------------------------------------------------------------------- pieces

def design(alpha: float, beta: float, p: Problem) -> np.ndarray:
    s = p.structure
    X = np.zeros((p.n, s.n_coef))
    rows = np.arange(p.n)
    X[:, 0] = 1.0
    X[rows, 1 + s.a_group] = np.exp(-alpha * p.logN)
    X[rows, 1 + s.n_a + s.b_group] = np.exp(-beta * p.logD)
    return X


def loss_terms(pred: np.ndarray, p: Problem, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-point objective terms for predictions ``pred`` (any leading batch shape)."""
    if p.objective == "squared":
        terms = (pred - p.loss) ** 2
    else:
        terms = _huber_whole(p.delta, np.log(np.maximum(pred, 1e-300)) - p.logL)
    return terms if weights is None else terms * weights


def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Columns differ by orders of magnitude (1 vs N^-alpha); scale them so NNLS is well posed.
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    x, _ = nnls(A / norms, b, maxiter=50 * A.shape[1])
    return x / norms


def project_coefficients(X: np.ndarray, p: Problem, weights: np.ndarray, exact: bool = True,
                         max_iter: int = 60, rtol: float = 1e-13) -> np.ndarray:
    """The non-negative coefficients minimising the objective for a fixed design X."""
    sw = np.sqrt(weights)
    if p.objective == "squared":
        return _nnls(sw[:, None] * X, sw * p.loss)
    # First-order start: log(Xc/L) ~ (Xc - L)/L, so relative least squares is close.
    c = _nnls(sw[:, None] * X / p.loss[:, None], sw)
    if not exact:
        return c
    pred = X @ c
    if np.any(pred <= 0):
        c[0] = max(c[0], 1e-12)
        pred = X @ c
    f = float(loss_terms(pred, p, weights).sum())
    for _ in range(max_iter):
        r = np.log(pred) - p.logL
        u = weights * np.minimum(1.0, p.delta / np.maximum(np.abs(r), 1e-300))
        J = X / pred[:, None]
        su = np.sqrt(u)
        target = _nnls(su[:, None] * J, su * (J @ c - r))
        t, accepted = 1.0, False
        while t > 1e-8:
            trial = c + t * (target - c)
            pred_t = X @ trial
            if np.all(pred_t > 0):
                f_t = float(loss_terms(pred_t, p, weights).sum())
                if f_t <= f:
                    accepted = True
                    break
            t *= 0.5
        if not accepted:
            break
        improvement = f - f_t
        c, pred, f = trial, pred_t, f_t
        if improvement <= rtol * max(f, 1e-300):
            break
    return c


# ----------------------------------------------------------------------------- batched polish

def _predict_batch(theta: np.ndarray, p: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """theta: (R, 2 + n_coef) = (alpha, beta, log c). Returns pred (R, n) and the three terms: E (R, 1), A and B (R, n)."""
    s = p.structure
    alpha, beta, c = theta[:, 0], theta[:, 1], np.exp(theta[:, 2:])
    R = len(theta)
    TE = c[:, :1]                       # (R, 1): broadcast where used
    pairs_a = c[:, 1:1 + s.n_a, None] * np.exp(-alpha[:, None] * p.uN[None, :])[:, None, :]
    pairs_b = c[:, 1 + s.n_a:, None] * np.exp(-beta[:, None] * p.uD[None, :])[:, None, :]
    TA = pairs_a.reshape(R, -1).take(p.a_pair, axis=1)
    TB = pairs_b.reshape(R, -1).take(p.b_pair, axis=1)
    pred = TA + TB
    pred += TE
    return pred, TE, TA, TB


def gauss_newton_terms(theta: np.ndarray, p: Problem, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot derivatives J5 (5, R, n) of the residual in theta = (alpha, beta, log c), weights u
    and residuals r (R, n) of the damped Gauss-Newton model, with u * r = w * psi(residual).
    J5 = (-log N S_A, -log D S_B, S_E, S_A, S_B) from ``gauss_newton_shares``'s shares S."""
    S, u, r = gauss_newton_shares(theta, p, w)
    return np.stack([-p.logN * S[1], -p.logD * S[2], S[0], S[1], S[2]]), u, r


def gauss_newton_shares(theta: np.ndarray, p: Problem, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The residual's derivatives in (log E, log A, log B), S (3, R, n), and the damped
    Gauss-Newton model's weights u and residuals r (R, n), with u * r = w * psi(residual).
    (Its derivative in alpha is -log N times that in log A, in beta -log D times that in log B.)

    Huber curvature: a point inside delta counts fully; a point outside (where Huber is
    linear and has no curvature) counts with HUBER_OUTSIDE_CURVATURE times the IRLS weight
    delta/|r|. Pure IRLS (factor 1) majorises the objective but converges only linearly:
    measured at hundreds of steps for some bootstrap replicates. A small factor gives
    near-Newton steps; the Levenberg-Marquardt damping (per row) keeps every accepted
    step a descent.
    """
    pred, TE, TA, TB = _predict_batch(theta, p)
    if p.objective == "squared":
        return np.stack([np.broadcast_to(TE, pred.shape), TA, TB]), w, pred - p.loss
    r = np.log(pred)
    r -= p.logL
    k = HUBER_OUTSIDE_CURVATURE
    # u = w inside delta and w k delta / |r| outside; r is scaled by 1/k outside. Computed
    # everywhere and blended with np.where: a ufunc's where= or np.copyto(where=) was measured
    # 4-7x slower than the whole-array operation (Marin bootstrap, 100 rows x 150 points).
    u = np.abs(r)
    inside = u < p.delta
    np.maximum(u, 1e-300, out=u)
    np.divide(k * p.delta, u, out=u)
    u = np.where(inside, 1.0, u)
    u *= w
    r = np.where(inside, r, r / k)
    S = np.empty((3,) + pred.shape)
    inv = np.divide(1.0, pred, out=pred)
    np.multiply(TE, inv, out=S[0])
    np.multiply(TA, inv, out=S[1])
    np.multiply(TB, inv, out=S[2])
    return S, u, r


def _share_sums_chunked(theta: np.ndarray, p: Problem, w: np.ndarray,
                        eq: NormalEquations) -> tuple[np.ndarray, np.ndarray]:
    """``eq.share_sums`` of ``gauss_newton_shares``, SUMS_CHUNK rows at a time.

    Rows are independent, and a chunk's temporaries (shares, weights, residuals, products)
    then stay in the core's cache: measured on the Marin bootstrap at 1000 rows, 10.9 ms a step
    whole against 6.7 ms in chunks of 100 (this project's Xeon, 2 MB L2 a core).
    """
    R = len(theta)
    if R <= SUMS_CHUNK:
        return eq.share_sums(*gauss_newton_shares(theta, p, w))
    sums, grads = np.empty((15, R, eq.C)), np.empty((5, R, eq.C))
    for start in range(0, R, SUMS_CHUNK):
        part = slice(start, start + SUMS_CHUNK)
        sums[:, part], grads[:, part] = eq.share_sums(*gauss_newton_shares(theta[part], p, w[part]))
    return sums, grads


def polish(theta0: np.ndarray, p: Problem, weights: np.ndarray, active: np.ndarray,
           max_iter: int = POLISH_MAX_ITER, rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, int]:
    """Batched damped Gauss-Newton on theta = (alpha, beta, log c): see ``_polish``."""
    theta, f, it, _ = polish_rows(theta0, p, weights, active, max_iter, rtol)
    return theta, f, it


def polish_rows(theta0: np.ndarray, p: Problem, weights: np.ndarray, active: np.ndarray,
                max_iter: int = POLISH_MAX_ITER, rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """``polish`` that also returns which rows were still gaining at ``max_iter`` (R,) bool."""
    # A trial step far out can overflow exp(); its objective is then not finite and the
    # step is rejected, so numpy's warning would only be noise in the user's report.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _polish(theta0, p, weights, active, max_iter, rtol)


def _polish(theta0: np.ndarray, p: Problem, weights: np.ndarray, active: np.ndarray,
            max_iter: int, rtol: float) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Batched damped Gauss-Newton on theta = (alpha, beta, log c).

    ``theta0`` (R, 2 + n_coef) and ``weights`` (R, n) hold one problem per row (multi-start
    or bootstrap replicates). ``active`` (n_coef,) or (R, n_coef) marks the coefficients that are free; the others
    stay at their value (a coefficient at zero has log c = -inf and is held there).
    Returns theta (R, .), objective values (R,), iterations used, rows still gaining at the limit.
    The Gauss-Newton model (and its Huber curvature) is ``gauss_newton_shares``'s.
    """
    theta = np.array(theta0, dtype=float)
    R, P = theta.shape
    active = np.broadcast_to(np.asarray(active, dtype=bool), (R, P - 2))
    free_all = np.concatenate([np.ones((R, 2), dtype=bool), active], axis=1)
    lo, hi = p.exponent_bounds
    s = p.structure
    normal_equations = NormalEquations(p.n, s.a_group, s.b_group, s.n_a, s.n_b, p.logN, p.logD)

    f = _objective_rows(theta, p, weights)
    running = np.ones(R, dtype=bool)
    mu = np.full(R, MARQUARDT_INITIAL)
    streak = np.zeros(R, dtype=int)
    it = 0
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(running)
        if idx.size == 0:
            break
        # every row running (the first steps of a bootstrap): views, not gathered copies
        th, w, free = (theta, weights, free_all) if idx.size == R else (theta[idx], weights[idx], free_all[idx])
        ROW_ITERATIONS[0] += idx.size
        system = normal_equations.system_from_sums(*_share_sums_chunked(th, p, w, normal_equations), free)
        f_old = f[idx]
        accepted = np.zeros(len(idx), dtype=bool)
        new_theta, new_f = th.copy(), f_old.copy()
        mu_row = mu[idx]
        first_try = np.zeros(len(idx), dtype=bool)
        # Levenberg-Marquardt: a rejected step is retried with a larger damping (towards a
        # short gradient step) instead of halved along the same direction, which far from
        # the optimum was measured to need ~10 halvings per step.
        for attempt in range(MARQUARDT_TRIES):
            todo = np.flatnonzero(~accepted)
            if todo.size == 0:
                break
            every = todo.size == len(idx)
            step = system.step(todo, mu_row[todo])
            trial = (th if every else th[todo]) + step
            trial[:, :2] = np.clip(trial[:, :2], lo, hi)
            f_t = _objective_rows(trial, p, w if every else w[todo])
            ok = np.isfinite(f_t) & (f_t <= f_old[todo])
            new_theta[todo[ok]] = trial[ok]
            new_f[todo[ok]] = f_t[ok]
            accepted[todo[ok]] = True
            first_try[todo[ok]] = attempt == 0
            mu_row[todo[~ok]] = np.maximum(mu_row[todo[~ok]] * 4.0, 1e-6)
        mu[idx] = np.where(first_try, np.maximum(mu_row / 3.0, MARQUARDT_MIN), mu_row)
        theta[idx], f[idx] = new_theta, new_f
        gain = f_old - new_f
        small = gain <= rtol * np.maximum(np.abs(f_old), 1e-300)
        # One small step is not convergence: along a flat valley a step can gain little and the
        # next much more (measured: Marin replicates stopped 0.2% above their optimum).
        streak[idx] = np.where(small, streak[idx] + 1, 0)
        done = ~accepted | (streak[idx] >= SMALL_GAIN_STEPS)
        running[idx[done]] = False
    return theta, f, it, running


# ----------------------------------------------------------------------------- bounds

def settle_coefficients(theta: np.ndarray, f: np.ndarray, p: Problem, W: np.ndarray,
                        max_iter: int = SETTLE_MAX_ITER, rtol: float = 1e-10,
                        bounds_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Projected Gauss-Newton on the raw coefficients c >= 0 at each row's fixed exponents.

    Free: coefficients above zero, and those at zero whose gradient is negative (released).
    A step past zero is clipped to zero (the projection), so a coefficient reaches its bound
    exactly, which the log-parameterised polish cannot do. Each accepted step lowers the objective.
    ``bounds_only``: rows already polished in log c; a row whose first step releases no
    coefficient and takes none past zero is left as it is (nothing at a bound to settle).
    """
    s = p.structure
    theta = theta.copy()
    f = f.copy()
    R = len(theta)
    alpha, beta = theta[:, 0], theta[:, 1]
    xA = np.exp(-alpha[:, None] * p.logN[None, :])
    xB = np.exp(-beta[:, None] * p.logD[None, :])
    c = np.exp(theta[:, 2:])
    onehot_a = np.eye(s.n_a)[s.a_group]      # (n, n_a)
    onehot_b = np.eye(s.n_b)[s.b_group]
    eq = NormalEquations(p.n, s.a_group, s.b_group, s.n_a, s.n_b)
    running = np.ones(R, dtype=bool)
    zeros = np.zeros((R, p.n))
    first = True
    for _ in range(max_iter):
        idx = np.flatnonzero(running)
        if idx.size == 0:
            break
        cc, w = c[idx], W[idx]
        pred = _pred(cc, xA[idx], xB[idx], s)
        with np.errstate(divide="ignore", invalid="ignore"):
            if p.objective == "squared":
                u, r_eff, inv = w, pred - p.loss, np.ones_like(pred)
            else:
                r = np.log(pred) - p.logL
                outside = np.abs(r) >= p.delta
                k = HUBER_OUTSIDE_CURVATURE
                u = np.where(outside, (w * k * p.delta) / np.maximum(np.abs(r), 1e-300), w)
                r_eff = np.where(outside, r / k, r)
                inv = 1.0 / pred
        J5 = np.stack([zeros[idx], zeros[idx], inv, xA[idx] * inv, xB[idx] * inv])
        sr = u * r_eff
        grad = np.concatenate([(sr * inv).sum(axis=1, keepdims=True), (sr * J5[3]) @ onehot_a,
                               (sr * J5[4]) @ onehot_b], axis=1)
        free_c = (cc > 0) | (grad < 0)
        free = np.concatenate([np.zeros((len(idx), 2), dtype=bool), free_c], axis=1)
        system = eq.assemble(J5, u, r_eff, free)
        step = system.step(np.arange(len(idx)), np.full(len(idx), 1e-9))[:, 2:]
        if bounds_only and first:
            quiet = ~np.any((cc <= 0) & free_c, axis=1) & ~np.any(cc + step < 0, axis=1)
            running[idx[quiet]] = False
            keep = ~quiet
            idx, cc, w, step = idx[keep], cc[keep], w[keep], step[keep]
            if idx.size == 0:
                break
        first = False
        accepted = np.zeros(len(idx), dtype=bool)
        new_c, new_f = cc.copy(), f[idx].copy()
        t = 1.0
        for _ in range(SETTLE_HALVINGS):
            todo = np.flatnonzero(~accepted)
            if todo.size == 0:
                break
            trial = np.maximum(cc[todo] + t * step[todo], 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ft = loss_terms(_pred(trial, xA[idx[todo]], xB[idx[todo]], s), p, w[todo]).sum(axis=1)
            ok = np.isfinite(ft) & (ft < f[idx[todo]])
            new_c[todo[ok]], new_f[todo[ok]] = trial[ok], ft[ok]
            accepted[todo[ok]] = True
            t *= 0.5
        gain = f[idx] - new_f
        c[idx], f[idx] = new_c, new_f
        running[idx[~accepted | (gain <= rtol * np.abs(f[idx]))]] = False
    with np.errstate(divide="ignore"):
        theta[:, 2:] = np.where(c > 0, np.log(c), -np.inf)
    return theta, f


def _pred(c: np.ndarray, xA: np.ndarray, xB: np.ndarray, s: Structure) -> np.ndarray:
    return c[:, :1] + c[:, 1 + s.a_group] * xA + c[:, 1 + s.n_a + s.b_group] * xB


# ----------------------------------------------------------------------------- the fit

def exponent_grid(bounds: tuple[float, float] = EXPONENT_BOUNDS, size: int = GRID_SIZE) -> np.ndarray:
    lo, hi = bounds
    return np.geomspace(max(lo, 0.02), min(hi, 2.5), size)


def solve(p: Problem, weights: np.ndarray | None = None, grid_size: int = GRID_SIZE,
          n_starts: int = N_POLISH_STARTS) -> Solution:
    """Global fit: coarse exponent grid with coefficients projected out, then a joint polish."""
    w = np.ones(p.n) if weights is None else np.asarray(weights, dtype=float)
    grid = exponent_grid(p.exponent_bounds, grid_size)
    scored, nodes, node_coef = [], [], []
    for a in grid:
        for b in grid:
            X = design(a, b, p)
            c = project_coefficients(X, p, w, exact=False)
            scored.append((float(loss_terms(X @ c, p, w).sum()), a, b))
            nodes.append((a, b))
            node_coef.append(c)
    landscape = Landscape(np.array(nodes), np.array(node_coef), grid)
    scored.sort()
    starts = [(a, b) for _, a, b in scored[:n_starts]]
    candidates = []
    for a, b in starts:
        c = project_coefficients(design(a, b, p), p, w, exact=True)
        candidates.append((a, b, c))
    # Coefficients NNLS put at zero (on the bound c >= 0) stay there during the polish;
    # all starts are polished together as one batch.
    active = np.array([c > 0 for _, _, c in candidates])
    theta0 = np.array([np.concatenate([[a, b], np.log(np.where(c > 0, c, 1.0))]) for a, b, c in candidates])
    theta0[:, 2:][~active] = -np.inf
    thetas, fs, iters = polish(theta0, p, np.repeat(w[None], len(candidates), axis=0), active,
                               max_iter=POLISH_MAX_ITER)
    best_row = int(np.nanargmin(fs))
    theta, fval = thetas[best_row], float(fs[best_row])
    alpha, beta = float(theta[0]), float(theta[1])
    # Re-project: exact coefficients at the polished exponents (catches a coefficient
    # that should leave or reach zero), keep whichever is better.
    c_proj = project_coefficients(design(alpha, beta, p), p, w, exact=True)
    f_proj = float(loss_terms(design(alpha, beta, p) @ c_proj, p, w).sum())
    coef = np.exp(theta[2:])
    if f_proj < fval:
        coef, fval = c_proj, f_proj
    # A coefficient the polish only sent towards zero in log space is put there exactly (or one
    # held at zero released) when that lowers the objective.
    with np.errstate(divide="ignore"):
        settled, f_settled = settle_coefficients(np.concatenate([[alpha, beta], np.log(coef)])[None],
                                                 np.array([fval]), p, w[None])
    if f_settled[0] < fval:
        coef, fval = np.exp(settled[0, 2:]), float(f_settled[0])
    converged = iters < POLISH_MAX_ITER
    message = (f"the polish stopped gaining after {iters} iteration(s)" if converged else
               f"the polish reached its iteration limit ({POLISH_MAX_ITER}); the optimum may be inexact")
    return Solution(alpha, beta, coef, fval, bound_flags(alpha, beta, coef, p), iters, converged, message,
                    landscape)


def bound_flags(alpha: float, beta: float, coef: np.ndarray, p: Problem) -> list[str]:
    lo, hi = p.exponent_bounds
    flags = []
    for name, value in (("alpha", alpha), ("beta", beta)):
        if value <= lo * (1 + BOUND_TOL) or value >= hi * (1 - BOUND_TOL):
            flags.append(f"{name}={value:.4g} is on the search bound [{lo}, {hi}]")
    if coef[0] <= 0:
        flags.append("E=0 is on the bound E >= 0")
    if np.any(coef[1:] <= 0):
        flags.append(f"{int(np.sum(coef[1:] <= 0))} coefficient(s) A/B at the bound 0")
    return flags


def objective_batch(theta: np.ndarray, p: Problem, weights: np.ndarray) -> np.ndarray:
    """Objective of each row of theta (R, 2 + n_coef) under its weights (R, n)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _objective_rows(theta, p, weights)


def _objective_rows(theta: np.ndarray, p: Problem, weights: np.ndarray) -> np.ndarray:
    """``loss_terms(...).sum(axis=1)`` of each row, the same operations done in place in the
    prediction's buffer (fresh (R, n) temporaries per trial were measured to cost page faults)."""
    pred = _predict_batch(theta, p)[0]
    if p.objective == "squared":
        return loss_terms(pred, p, weights).sum(axis=1)
    np.maximum(pred, 1e-300, out=pred)
    np.log(pred, out=pred)
    pred -= p.logL
    pred = _huber_whole(p.delta, pred)
    pred *= weights
    return pred.sum(axis=1)


def _huber_whole(delta: float, r: np.ndarray) -> np.ndarray:
    """scipy.special.huber(delta, r) for delta > 0, bit for bit (the same (0.5 r) r and
    delta (|r| - delta / 2)), from whole-array operations: scipy's ufunc branches per element
    and was measured ~2.5x slower on the bootstrap's (100, 150) blocks."""
    size = np.abs(r)
    inside = size <= delta
    size -= 0.5 * delta
    size *= delta
    quadratic = 0.5 * r
    quadratic *= r
    return np.where(inside, quadratic, size)


def predict(alpha: float, beta: float, coef: np.ndarray, p: Problem) -> np.ndarray:
    return design(alpha, beta, p) @ coef


# ----------------------------------------------------------------------------- Hoffmann cross-check

def hoffmann_grid() -> np.ndarray:
    """Hoffmann et al. 2022's 4,500 starting points (e, a, b, alpha, beta) for L-BFGS."""
    e = np.arange(-1.0, 1.5, 0.5)
    a = b = np.arange(0.0, 30.0, 5.0)
    alpha = beta = np.arange(0.0, 2.5, 0.5)
    mesh = np.meshgrid(e, a, b, alpha, beta, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _lse_objective(x: np.ndarray, p: Problem) -> tuple[float, np.ndarray]:
    """Objective and gradient in Hoffmann's parameterisation x = (e, a_0.., b_0.., alpha, beta)."""
    with np.errstate(over="ignore", invalid="ignore"):  # far starts overflow; L-BFGS backs off
        return _lse_objective_unguarded(x, p)


def _lse_objective_unguarded(x: np.ndarray, p: Problem) -> tuple[float, np.ndarray]:
    s = p.structure
    e, a, b, alpha, beta = x[0], x[1:1 + s.n_a], x[1 + s.n_a:1 + s.n_a + s.n_b], x[-2], x[-1]
    z = np.stack([np.full(p.n, e), a[s.a_group] - alpha * p.logN, b[s.b_group] - beta * p.logD])
    lse = logsumexp(z, axis=0)
    soft = np.exp(z - lse)
    if p.objective == "squared":
        pred = np.exp(lse)
        r = pred - p.loss
        f = float(np.sum(r * r))
        dm = 2.0 * r * pred  # d f / d lse
    else:
        r = lse - p.logL
        f = float(np.sum(huber(p.delta, r)))
        dm = np.clip(r, -p.delta, p.delta)
    grad = np.empty_like(x)
    grad[0] = np.sum(dm * soft[0])
    grad[1:1 + s.n_a] = np.bincount(s.a_group, dm * soft[1], s.n_a)
    grad[1 + s.n_a:1 + s.n_a + s.n_b] = np.bincount(s.b_group, dm * soft[2], s.n_b)
    grad[-2] = -np.sum(dm * soft[1] * p.logN)
    grad[-1] = -np.sum(dm * soft[2] * p.logD)
    return f, grad


def hoffmann_lbfgs(p: Problem, starts: np.ndarray | None = None) -> Solution:
    """Multi-start L-BFGS over log L = LSE(a - alpha log N, b - beta log D, e) (Hoffmann et al. 2022).

    Every optimizer's a and b start at the grid's a and b. Slow by design: it is the baseline.
    """
    s = p.structure
    starts = hoffmann_grid() if starts is None else starts
    best_f, best = np.inf, None
    for e, a, b, alpha, beta in starts:
        x0 = np.concatenate([[e], np.full(s.n_a, a), np.full(s.n_b, b), [alpha, beta]])
        res = minimize(_lse_objective, x0, args=(p,), jac=True, method="L-BFGS-B")
        if np.isfinite(res.fun) and res.fun < best_f:
            best_f, best = float(res.fun), res
    best_x = best.x
    coef = np.exp(np.concatenate([[best_x[0]], best_x[1:1 + s.n_a + s.n_b]]))
    alpha, beta = float(best_x[-2]), float(best_x[-1])
    return Solution(alpha, beta, coef, best_f, [], converged=bool(best.success), message=str(best.message))
