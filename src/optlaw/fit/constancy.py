"""Is each optimizer's rho constant across scale? A drift extension of the shared law and its test.

The shared law says optimizer o gets from D tokens what the reference gets from rho_D,o D, at
every model size. The drift extension lets the factor move with N,

    rho_D,o(N) = rho_D,o (N / N_ref)^gamma_o,   i.e.  B_o D^-beta  ->  B_o D^-beta (N / N_ref)^(-gamma_o beta),

and its mirror rho_N,o(D) = rho_N,o (D / D_ref)^gamma_o for the A term (N_ref, D_ref: geometric
means of the data's distinct N and D, so rho_o is the factor in the middle of the data).

Test: both laws fitted by least squares on log loss (the Gaussian model of the residuals, so
that the F statistic has its textbook distribution; the headline fit's Huber objective has no
such test), F = ((RSS0 - RSS1) / q) / (RSS1 / (n - p1)), q = the number of gamma's. Each
optimizer also gets its own F test (the drift law against the same law with its gamma at 0)
and a cell-bootstrap interval for gamma (the drift law refitted per replicate, warm-started,
batched). Every gamma is relative to the reference: the same drift in every optimizer is the
reference's own rho drifting the other way.

Data only, no law: at each N where the reference has >= 2 token budgets, its losses are
interpolated in (log D, log L); each other optimizer's loss at that N is inverted through it,
giving the D the reference needs, and rho_D = that D / the optimizer's D (the median over its
cells at that N; cells outside the reference's range are extrapolated along the end segment
and marked).

That data-only number is not the law's rho_D parameter: at fixed N it also carries the N-term
factor rho_N (muon on Marin: parameter rho_D 1.73 with rho_N 0.84, while the data-only value is
1.14-1.36). What the laws say about the same number is got by the same inversion applied to each
law's predicted losses at the same cells (``law_effective_rho_D_by_N`` for the headline constant
law, ``drift_law_effective_rho_D_by_N`` for the drift law): those are the lines to hold the data
against. The drift law is its own least-squares fit (alpha, beta, E, A, B refitted), so its rho_D
at N_ref need not equal the headline (Huber) fit's constant rho_D, nor the F test's null fit's
(``rho_D_constant_law_least_squares``); all three are in fit.json.

Why own Levenberg-Marquardt (``_lm``): up to 1000 replicates and 200 simulated draws are
fitted at once as one batch; scipy's least_squares fits one problem per call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import f as f_distribution

from optlaw.fit.laws import cell_bootstrap_counts
from optlaw.fit.result import CI_LEVEL, FitResult, percentile_intervals
from optlaw.fit.table import RunTable

LM_MAX_ITER = 100
LM_RTOL = 1e-10
LEVEL = 0.05    # the test's nominal level: "rejected" below it


@dataclass
class _Design:
    """Data and parameter layout of one drift law (or its constant-rho restriction)."""

    logN: np.ndarray
    logD: np.ndarray
    a_group: np.ndarray
    b_group: np.ndarray
    n_a: int
    n_b: int
    drift_group: np.ndarray     # per point: index of its gamma, -1 for none (the reference)
    n_gamma: int
    drift_x: np.ndarray         # log(N / N_ref) for rho_D(N), log(D / D_ref) for rho_N(D)
    on_b: bool                  # True: the drift moves the B term (rho_D(N)); False: the A term

    @property
    def n_params(self) -> int:
        return 2 + 1 + self.n_a + self.n_b + self.n_gamma

    def terms(self, theta: np.ndarray):
        """pred (R, n) and the pieces needed for the Jacobian."""
        alpha, beta = theta[:, :1], theta[:, 1:2]
        e = theta[:, 2:3]
        a = theta[:, 3:3 + self.n_a][:, self.a_group]
        b = theta[:, 3 + self.n_a:3 + self.n_a + self.n_b][:, self.b_group]
        g = np.concatenate([theta[:, 3 + self.n_a + self.n_b:], np.zeros((len(theta), 1))], axis=1)[:, self.drift_group]
        shift = g * self.drift_x
        if self.on_b:
            ZA, ZB = self.logN + 0 * shift, self.logD + shift
        else:
            ZA, ZB = self.logN + shift, self.logD + 0 * shift
        with np.errstate(over="ignore", under="ignore"):
            TE = np.exp(e) + 0 * ZA
            TA = np.exp(a - alpha * ZA)
            TB = np.exp(b - beta * ZB)
        return TE + TA + TB, TE, TA, TB, ZA, ZB

    def jacobian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pred, TE, TA, TB, ZA, ZB = self.terms(theta)
        R, n = pred.shape
        J = np.zeros((R, n, self.n_params))
        inv = 1.0 / pred
        J[:, :, 0] = -TA * ZA * inv
        J[:, :, 1] = -TB * ZB * inv
        J[:, :, 2] = TE * inv
        rows = np.arange(n)
        J[:, rows, 3 + self.a_group] = TA * inv
        J[:, rows, 3 + self.n_a + self.b_group] = TB * inv
        has = self.drift_group >= 0
        col = 3 + self.n_a + self.n_b + self.drift_group[has]
        if self.on_b:
            J[:, rows[has], col] = (-theta[:, 1:2] * self.drift_x[has] * TB[:, has]) * inv[:, has]
        else:
            J[:, rows[has], col] = (-theta[:, :1] * self.drift_x[has] * TA[:, has]) * inv[:, has]
        return np.log(pred), J


def _lm(design: _Design, theta0: np.ndarray, y: np.ndarray, w: np.ndarray, free: np.ndarray,
        max_iter: int = LM_MAX_ITER) -> tuple[np.ndarray, np.ndarray]:
    """Batched Levenberg-Marquardt on sum w (log pred - y)^2. theta0 (R, P), y and w (R, n),
    free (R, P) or (P,). Returns theta and the weighted RSS per row."""
    theta = theta0.copy()
    R, P = theta.shape
    free = np.broadcast_to(free, (R, P))

    def rss(th, rows):
        with np.errstate(all="ignore"):
            out = np.sum(w[rows] * (np.log(design.terms(th)[0]) - y[rows]) ** 2, axis=1)
        return np.where(np.isfinite(out), out, np.inf)

    f = rss(theta, np.arange(R))
    mu = np.full(R, 1e-3)
    running = np.ones(R, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(running)
        if idx.size == 0:
            break
        with np.errstate(all="ignore"):
            logp, J = design.jacobian(theta[idx])
        r = logp - y[idx]
        Jw = J * w[idx][:, :, None]
        H = np.einsum("rnp,rnq->rpq", Jw, J)
        g = np.einsum("rnp,rn->rp", Jw, r)
        fr = free[idx]
        H = np.where(fr[:, :, None] & fr[:, None, :], H, 0.0)
        g = np.where(fr, g, 0.0)
        diag = np.einsum("rpp->rp", H)
        accepted = np.zeros(len(idx), dtype=bool)
        new_theta, new_f = theta[idx].copy(), f[idx].copy()
        for _ in range(12):
            todo = np.flatnonzero(~accepted)
            if todo.size == 0:
                break
            d = np.where(fr[todo], (mu[idx[todo]][:, None] + 1e-12) * np.maximum(diag[todo], 1e-300), 1.0)
            A = H[todo] + d[:, :, None] * np.eye(P)
            try:
                step = -np.linalg.solve(A, g[todo][:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                step = -np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(A, g[todo])])
            step = np.where(fr[todo], step, 0.0)
            trial = theta[idx[todo]] + step
            ft = rss(trial, idx[todo])
            ok = ft <= f[idx[todo]]
            new_theta[todo[ok]], new_f[todo[ok]] = trial[ok], ft[ok]
            accepted[todo[ok]] = True
            mu[idx[todo[ok]]] = np.maximum(mu[idx[todo[ok]]] / 3, 1e-12)
            mu[idx[todo[~ok]]] *= 8
        gain = f[idx] - new_f
        theta[idx], f[idx] = new_theta, new_f
        running[idx[~accepted | (gain <= LM_RTOL * np.maximum(new_f, 1e-300))]] = False
    return theta, f


@dataclass(frozen=True, kw_only=True)
class DriftTest:
    """One direction of the test (rho_D drifting with N, or rho_N with D)."""

    name: str                          # rho_D(N) | rho_N(D)
    reference_scale: float             # N_ref (or D_ref)
    f_statistic: float | None
    p_value: float | None
    df: tuple[int, int] | None
    gamma: dict                        # optimizer -> {gamma, ci, p_value, rho at the reference scale (both fits)}
    note: str = ""
    # the least-squares fits' shared parameters: {"drift": {alpha, beta, E}, "constant": {...}}
    exponents: dict | None = None
    # the drift law's fitted loss at each row of the table it was given (not in fit.json)
    drift_loss: np.ndarray | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "reference_scale": self.reference_scale, "test": "F",
                "f_statistic": self.f_statistic, "p_value": self.p_value,
                "df": list(self.df) if self.df else None, "gamma": self.gamma, "note": self.note,
                "least_squares_fits": self.exponents}


@dataclass(frozen=True, kw_only=True)
class RhoConstancy:
    """fit.json ``rho_constancy``: the tests and the data-only multipliers per size."""

    tests: dict                         # name -> DriftTest
    effective_rho_D_by_N: dict          # optimizer -> [{N, rho_D, n_cells, extrapolated}]
    law_rho_D: dict                     # optimizer -> the constant law's rho_D and its interval
    reference: str
    # the same inversion applied to the headline law's / the drift law's predicted losses
    law_effective_rho_D_by_N: dict | None = None
    drift_law_effective_rho_D_by_N: dict | None = None

    @property
    def primary(self) -> DriftTest | None:
        return self.tests.get("rho_D(N)") or self.tests.get("rho_N(D)")

    def to_json(self) -> dict:
        main = self.primary
        optimizers = {}
        names = sorted(set(self.effective_rho_D_by_N) | set(self.law_rho_D)
                       | {o for t in self.tests.values() for o in t.gamma})
        for opt in names:
            entry = {"law_rho_D": self.law_rho_D.get(opt), "effective_rho_D_by_N": self.effective_rho_D_by_N.get(opt, []),
                     "law_effective_rho_D_by_N": (self.law_effective_rho_D_by_N or {}).get(opt, []),
                     "drift_law_effective_rho_D_by_N": (self.drift_law_effective_rho_D_by_N or {}).get(opt, [])}
            for t in self.tests.values():
                key = "rho_D_exponent_N" if t.name == "rho_D(N)" else "rho_N_exponent_D"
                g = t.gamma.get(opt)
                if g is not None:
                    entry[key] = g["gamma"]
                    entry[key + "_ci"] = g["ci"]
                    entry[key + "_p_value"] = g["p_value"]
                    rho = "rho_D" if t.name == "rho_D(N)" else "rho_N"
                    entry[rho + "_drift_law_at_reference_scale"] = g.get("rho_at_reference_scale")
                    entry[rho + "_constant_law_least_squares"] = g.get("rho_constant_least_squares")
            optimizers[opt] = entry
        return {"test": f"F test of constant rho against {main.name} drift (least squares on log loss)"
                if main else None,
                "p_value": main.p_value if main else None, "level": LEVEL,
                "tests": {k: t.to_json() for k, t in self.tests.items()}, "optimizers": optimizers}


def _drift_design(table: RunTable, order: list[str], variant: str, on_b: bool, mode: str) -> tuple[_Design, float]:
    index = {o: i for i, o in enumerate(order)}
    g = np.array([index[o] for o in table.optimizer])
    zeros = np.zeros(len(table), dtype=int)
    a_group, n_a = (g, len(order)) if variant in ("full", "rho_N") else (zeros, 1)
    b_group, n_b = (g, len(order)) if variant in ("full", "rho_D") else (zeros, 1)
    values = table.N if on_b else table.D
    scale = float(np.exp(np.mean(np.log(np.unique(values)))))
    drift_group = np.where(g == 0, -1, g - 1)
    if mode == "constant":
        drift_group = np.full(len(table), -1)
    design = _Design(np.log(table.N), np.log(table.D), a_group, b_group, n_a, n_b, drift_group,
                     len(order) - 1, np.log(values / scale), on_b)
    return design, scale


def _start(shared: FitResult, order: list[str], design: _Design) -> tuple[np.ndarray, np.ndarray]:
    """theta from the headline fit (gamma = 0); a coefficient at zero starts tiny and is held."""
    p = shared.params
    laws = shared.laws
    A = [laws[o].A for o in order][:design.n_a]
    B = [laws[o].B for o in order][:design.n_b]
    coef = np.array([laws[order[0]].E] + A + B)
    held = coef <= 0
    with np.errstate(divide="ignore"):
        logc = np.where(held, np.log(1e-12), np.log(np.where(held, 1.0, coef)))
    theta = np.concatenate([[p["alpha"], p["beta"]], logc, np.zeros(design.n_gamma)])
    free = np.concatenate([[True, True], ~held, np.ones(design.n_gamma, dtype=bool)])
    return theta, free


def drift_test(table: RunTable, shared: FitResult, on_b: bool = True, bootstrap: int = 0, seed: int = 0,
               counts: np.ndarray | None = None) -> DriftTest:
    """F test of constant rho against the drift law in one direction, per-optimizer tests and intervals."""
    order = list(shared.optimizers)
    table = table.subset(np.isin(table.optimizer, order))
    name = "rho_D(N)" if on_b else "rho_N(D)"
    design, scale = _drift_design(table, order, shared.variant, on_b, "drift")
    theta0, free = _start(shared, order, design)
    gcols = np.arange(design.n_params - design.n_gamma, design.n_params)
    free_const = free.copy()
    free_const[gcols] = False
    # optimizers whose own rho can drift: rho_D needs B per optimizer, rho_N needs A per optimizer
    if (on_b and design.n_b == 1) or (not on_b and design.n_a == 1) or design.n_gamma == 0:
        return DriftTest(name=name, reference_scale=scale, f_statistic=None, p_value=None, df=None, gamma={},
                         note=f"not testable: the {shared.variant} law has no per-optimizer {name[:5]}")
    values = table.N if on_b else table.D
    if len(np.unique(values)) < 2:
        return DriftTest(name=name, reference_scale=scale, f_statistic=None, p_value=None, df=None, gamma={},
                         note=f"not testable: the data have one {'N' if on_b else 'D'} value")
    n = len(table)
    y = np.log(table.loss)[None]
    w = np.ones((1, n))
    K = design.n_gamma
    # rows: constant law, full drift law, one row per optimizer with every gamma free but its own
    # (its own test: does its gamma add to the others'?)
    starts = np.repeat(theta0[None], 2 + K, axis=0)
    frees = np.repeat(free[None], 2 + K, axis=0)
    frees[0, gcols] = False
    for k in range(K):
        frees[2 + k, gcols[k]] = False
    theta, rss = _lm(design, starts, np.repeat(y, 2 + K, axis=0), np.repeat(w, 2 + K, axis=0), frees)
    rss0, rss1 = rss[0], rss[1]
    p1 = int(frees[1].sum())
    dof = n - p1
    gamma: dict = {}
    if dof <= 0 or not np.isfinite(rss1) or rss1 <= 0:
        return DriftTest(name=name, reference_scale=scale, f_statistic=None, p_value=None, df=None,
                         gamma={o: {"gamma": float(theta[1, gcols[k]]), "ci": None, "p_value": None}
                                for k, o in enumerate(order[1:])},
                         note=f"not testable: {n} points for {p1} parameters of the drift law")
    F = max(((rss0 - rss1) / K) / (rss1 / dof), 0.0)
    p_value = float(f_distribution.sf(F, K, dof))
    ci = {}
    if bootstrap:
        if counts is None:
            counts = cell_bootstrap_counts(table, bootstrap, seed)
        th_b, _ = _lm(design, np.repeat(theta[1:2], len(counts), axis=0), np.repeat(y, len(counts), axis=0),
                      counts.astype(float), np.repeat(frees[1:2], len(counts), axis=0))
        ci = percentile_intervals({o: th_b[:, gcols[k]] for k, o in enumerate(order[1:])}, CI_LEVEL)
    for k, o in enumerate(order[1:]):
        F_o = max((rss[2 + k] - rss1) / (rss1 / dof), 0.0)
        p_o = float(f_distribution.sf(F_o, 1, dof))
        gamma[o] = {"gamma": float(theta[1, gcols[k]]), "ci": list(ci[o]) if o in ci else None, "p_value": p_o,
                    "rho_at_reference_scale": _rho_at_scale(design, theta[1], k + 1),
                    "rho_constant_least_squares": _rho_at_scale(design, theta[0], k + 1)}
    exponents = {fit: {"alpha": float(theta[r, 0]), "beta": float(theta[r, 1]), "E": float(np.exp(theta[r, 2]))}
                 for r, fit in ((1, "drift"), (0, "constant"))}
    with np.errstate(all="ignore"):
        drift_loss = design.terms(theta[1:2])[0][0]
    return DriftTest(name=name, reference_scale=scale, f_statistic=float(F), p_value=p_value, df=(K, dof),
                     gamma=gamma, exponents=exponents, drift_loss=drift_loss)


def _rho_at_scale(design: _Design, theta: np.ndarray, group: int) -> float | None:
    """The drift law's rho of optimizer ``group`` at N_ref (or D_ref): (c_ref / c_o)^(1 / exponent)."""
    if design.on_b:
        base, count, exponent = 3 + design.n_a, design.n_b, theta[1]
    else:
        base, count, exponent = 3, design.n_a, theta[0]
    if count == 1:
        return None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # degenerate fits: inf/nan -> null in fit.json
        return float(np.exp((theta[base] - theta[base + group]) / exponent))


def effective_rho_D_by_N(table: RunTable, reference: str, optimizers: list[str]) -> dict:
    """Data-only rho_D per (optimizer, N): the reference's L(D) at that N inverted at the optimizer's losses."""
    out = {}
    ref = table.optimizer == reference
    for opt in optimizers:
        if opt == reference:
            continue
        rows = []
        m = table.optimizer == opt
        for N in np.unique(table.N[m]):
            at = ref & np.isclose(table.N, N, rtol=1e-9)
            Ds = np.unique(table.D[at])
            if len(Ds) < 2:
                continue
            ref_logL = np.array([np.log(table.loss[at & (table.D == d)]).mean() for d in Ds])
            ref_logL = np.minimum.accumulate(ref_logL)     # loss falls with D; noise may not
            logD = np.log(Ds)
            values, outside = [], []
            here = m & np.isclose(table.N, N, rtol=1e-9)
            for d in np.unique(table.D[here]):
                target = np.log(table.loss[here & (table.D == d)]).mean()
                log_d_ref, extrapolated = _invert(logD, ref_logL, target)
                if log_d_ref is None:
                    continue
                values.append(np.exp(log_d_ref) / d)
                outside.append(extrapolated)
            if not values:
                continue
            values, outside = np.array(values), np.array(outside)
            use = values[~outside] if (~outside).any() else values
            rows.append({"N": float(N), "rho_D": float(np.median(use)), "n_cells": int(len(use)),
                         "extrapolated": bool(outside.all())})
        out[opt] = rows
    return out


def _invert(logD: np.ndarray, logL: np.ndarray, target: float) -> tuple[float | None, bool]:
    """log D at which the piecewise-linear (log D, log L) curve reaches ``target``."""
    if logL[0] >= target >= logL[-1]:
        for i in range(len(logD) - 1):
            hi, lo = logL[i], logL[i + 1]
            if hi >= target >= lo:
                t = 0.0 if hi == lo else (hi - target) / (hi - lo)
                return float(logD[i] + t * (logD[i + 1] - logD[i])), False
    # outside the reference's range: extend its end segment (marked as extrapolated)
    i = 0 if target > logL[0] else len(logD) - 2
    slope = (logL[i + 1] - logL[i]) / (logD[i + 1] - logD[i])
    if slope >= 0:
        return None, True
    return float(logD[i] + (target - logL[i]) / slope), True


def rho_constancy(table: RunTable, shared: FitResult, bootstrap: int = 0, seed: int = 0) -> RhoConstancy:
    """Both drift tests, and the data-only multipliers per size, for the shared fit's optimizers."""
    order = list(shared.optimizers)
    sub = table.subset(np.isin(table.optimizer, order))
    tests = {}
    for on_b in (True, False):
        t = drift_test(sub, shared, on_b=on_b, bootstrap=bootstrap, seed=seed)
        tests[t.name] = t
    law = {o: {"rho_D": shared.params["rho_D", o], "ci": list(shared.ci[("rho_D", o)])
               if ("rho_D", o) in shared.ci else None} for o in order if o != shared.reference}
    headline_loss = np.empty(len(sub))
    for o in order:
        m = sub.optimizer == o
        headline_loss[m] = shared.predict(sub.N[m], sub.D[m], o)
    drift_loss = tests["rho_D(N)"].drift_loss
    return RhoConstancy(tests=tests, effective_rho_D_by_N=effective_rho_D_by_N(sub, shared.reference, order),
                        law_rho_D=law, reference=shared.reference,
                        law_effective_rho_D_by_N=_implied(sub, headline_loss, shared.reference, order),
                        drift_law_effective_rho_D_by_N=_implied(sub, drift_loss, shared.reference, order))


def _implied(table: RunTable, loss: np.ndarray | None, reference: str, optimizers: list[str]) -> dict | None:
    """What a law says the data-only rho_D would be: the same inversion of its predicted losses."""
    if loss is None or not np.all(np.isfinite(loss) & (loss > 0)):
        return None
    return effective_rho_D_by_N(replace(table, loss=np.asarray(loss, dtype=float)), reference, optimizers)
