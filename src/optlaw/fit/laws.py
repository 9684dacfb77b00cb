"""The laws optlaw fits, as functions of a RunTable returning a FitResult.

- ``fit_separate``: one Chinchilla law L = E + A/N^alpha + B/D^beta per optimizer.
- ``fit_shared``: L = E + A/(rho_N N)^alpha + B/(rho_D D)^beta, with E, A, B, alpha, beta
  shared and rho_N, rho_D per optimizer (reference optimizer: rho = 1). Solved as
  per-optimizer coefficients A_o = A rho_N,o^-alpha, B_o = B rho_D,o^-beta (linear for
  fixed exponents), so rho_N,o = (A / A_o)^(1/alpha). Variants ``rho_D`` and ``rho_N``
  share A (resp. B) across optimizers, so only the other rho is free.
- ``fit_compute``: the shared law plus each optimizer's cost per N*D (FLOPs x step-cost
  factor, or wall-clock), giving its effective compute multiplier against the reference
  and its compute-optimal allocation N*(C), D*(C).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from optlaw.errors import UserError
from optlaw.fit import identify, solver
from optlaw.fit.bootstrap import Refits, refit
from optlaw.fit.identify import Finding, Identifiability, Verdict
from optlaw.fit.result import (
    CI_LEVEL, SHARED_NAMES, ChinchillaLaw, FitResult, FitWarning, Goodness, ParamKey, ParamMap, Residual, Solve,
    WarningKind, compute_optimal, percentile_intervals,
)
from optlaw.fit.table import RunTable

VARIANTS = ("full", "rho_D", "rho_N")
COST_BASES = ("flops", "wallclock")
DEFAULT_BOOTSTRAP = 1000
SEPARATE_MIN_CELLS = 5          # five parameters
SHARED_MIN_CELLS = {"full": 2, "rho_D": 1, "rho_N": 1}  # own parameters per non-reference optimizer


# ----------------------------------------------------------------------------- helpers

def _coverage_warning(message: str, optimizer: str | None = None) -> FitWarning:
    return FitWarning(message=message, kind=WarningKind.COVERAGE, optimizer=optimizer)


def _problem(table: RunTable, structure: solver.Structure, objective: str) -> solver.Problem:
    if objective not in solver.OBJECTIVES:
        raise UserError(f"objective must be one of {', '.join(solver.OBJECTIVES)}, got {objective!r}")
    return solver.Problem(np.log(table.N), np.log(table.D), table.loss, structure, objective)


def cell_bootstrap_counts(table: RunTable, n_boot: int, seed: int = 0) -> np.ndarray:
    """Resampling counts (n_boot, n_points): cells (optimizer, N, D) drawn with replacement
    within each optimizer, every run of a drawn cell counted once per draw."""
    rng = np.random.default_rng(seed)
    keys = table.cell_keys()
    counts = np.zeros((n_boot, len(table)))
    for opt in table.optimizers:
        idx = [i for i, k in enumerate(keys) if k[0] == opt]
        cells = sorted({keys[i] for i in idx})
        position = {c: j for j, c in enumerate(cells)}
        cell_of_point = np.array([position[keys[i]] for i in idx])
        draws = rng.integers(0, len(cells), size=(n_boot, len(cells)))
        cell_counts = np.zeros((n_boot, len(cells)))
        np.add.at(cell_counts, (np.arange(n_boot)[:, None], draws), 1.0)
        counts[:, idx] = cell_counts[:, cell_of_point]
    return counts


def conditioning(alpha: float, beta: float, coef: np.ndarray, p: solver.Problem,
                 names: list[str]) -> dict:
    """Condition number of J^T J and parameter correlations, J taken with respect to
    Hoffmann's parameters (e = log E, a = log A, b = log B, alpha, beta) of the fitted
    residual (log loss for huber_log, loss for squared). Coefficients at zero are left out."""
    s = p.structure
    c = coef
    TA = c[1 + s.a_group] * np.exp(-alpha * p.logN)
    TB = c[1 + s.n_a + s.b_group] * np.exp(-beta * p.logD)
    pred = c[0] + TA + TB
    scale = 1.0 / pred if p.objective == "huber_log" else np.ones_like(pred)
    J = np.zeros((p.n, 2 + s.n_coef))
    rows = np.arange(p.n)
    J[:, 0] = -p.logN * TA * scale
    J[:, 1] = -p.logD * TB * scale
    J[:, 2] = c[0] * scale
    J[rows, 3 + s.a_group] = TA * scale
    J[rows, 3 + s.n_a + s.b_group] = TB * scale
    keep = np.concatenate([[True, True], coef > 0])
    J = J[:, keep]
    kept_names = [n for n, k in zip(["alpha", "beta"] + names, keep) if k]
    JtJ = J.T @ J
    eig = np.linalg.eigvalsh(JtJ)
    cond = float(eig[-1] / eig[0]) if eig[0] > 0 else float("inf")
    cov = np.linalg.pinv(JtJ)
    sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    corr = cov / np.outer(sd, sd)
    off = np.abs(corr[~np.eye(len(corr), dtype=bool)])
    return {"condition_number": cond, "parameters": tuple(kept_names),
            "correlation": tuple(tuple(row) for row in corr.round(4).tolist()),
            "max_abs_correlation": float(off.max()) if off.size else 0.0}


def _solve_record(optimizer: str | None, sol: solver.Solution, p: solver.Problem, table: RunTable,
                  names: list[str]) -> Solve:
    return Solve(optimizer=optimizer, objective_value=sol.objective_value, converged=sol.converged,
                 message=sol.message, on_bound=tuple(sol.on_bound), n_points=len(table), n_cells=table.n_cells(),
                 **conditioning(sol.alpha, sol.beta, sol.coef, p, names))


def _convergence_warnings(solves: dict[str | None, Solve]) -> list[FitWarning]:
    return [FitWarning(message=("" if opt is None else f"{opt}: ") + f"not converged: {s.message}",
                       kind=WarningKind.CONVERGENCE, optimizer=opt)
            for opt, s in solves.items() if not s.converged]


def _goodness(table: RunTable, laws: dict[str, ChinchillaLaw]) -> dict[str, Goodness]:
    out = {}
    for opt in table.optimizers:
        m = table.optimizer == opt
        pred = laws[opt].loss(table.N[m], table.D[m])
        resid = table.loss[m] - pred
        out[opt] = Goodness(
            n_points=int(m.sum()), n_cells=table.n_cells(opt), rmse=float(np.sqrt(np.mean(resid ** 2))),
            mean_relative_error=float(np.mean(np.abs(resid) / table.loss[m])),
            residuals=tuple(Residual(float(n), float(d), float(l), float(q))
                            for n, d, l, q in zip(table.N[m], table.D[m], table.loss[m], pred)))
    return out


def distinct_cells(table: RunTable, counts: np.ndarray) -> np.ndarray:
    """(R,) number of distinct cells each resample of ``counts`` (R, n) draws."""
    _, cell = np.unique(np.array([f"{o}|{n!r}|{d!r}" for o, n, d in table.cell_keys()]), return_inverse=True)
    onehot = np.zeros((len(table), cell.max() + 1))
    onehot[np.arange(len(table)), cell] = 1.0
    return ((counts > 0).astype(float) @ onehot > 0).sum(axis=1)


def _refit_diagnostics(refits: Refits, names: list[str]) -> dict:
    """How the bootstrap refits went, for fit.json and the verdicts."""
    zero = ~np.isfinite(refits.theta[:, 2:])
    return {"replicates": len(refits.theta), "grid_starts": refits.n_grid_starts,
            "multistart_reasons": list(refits.multistart_reasons),
            "share_left_warm_basin": float(refits.left_warm_basin.mean()),
            "share_bound_changed": float(refits.bound_changed.mean()),
            "share_at_zero": {name: float(share) for name, share in zip(names, zero.mean(axis=0)) if share > 0}}


def _frozen_samples(samples: dict) -> ParamMap[np.ndarray]:
    for values in samples.values():
        values.flags.writeable = False
    return ParamMap(samples)


# ----------------------------------------------------------------------------- separate

def fit_separate(table: RunTable, *, objective: str = "huber_log", bootstrap: int = 0, seed: int = 0,
                 min_cells: int = SEPARATE_MIN_CELLS) -> FitResult:
    """One Chinchilla law per optimizer. Optimizers with fewer than ``min_cells`` cells are
    left out with a warning; if none remains, UserError."""
    notes: list[FitWarning] = []
    fitted, short = [], []
    for opt in table.optimizers:
        k = table.n_cells(opt)
        if k < min_cells:
            short.append(f"{opt}: {k}")
            notes.append(_coverage_warning(
                f"optimizer {opt!r} has {k} cell(s), fewer than the {min_cells} a separate Chinchilla fit "
                f"needs; left out of the separate fits (add runs for it)", opt))
        else:
            fitted.append(opt)
    if not fitted:
        raise UserError(f"no optimizer has the {min_cells} distinct (N, D) cells a separate Chinchilla fit needs "
                        f"(cells: {', '.join(short)}); add runs or use --law shared")
    params: dict[ParamKey, float] = {}
    samples: dict[ParamKey, np.ndarray] = {}
    laws, solves, diagnostics = {}, {}, {}
    undetermined: dict[ParamKey, float] = {}
    counts_all = cell_bootstrap_counts(table, bootstrap, seed) if bootstrap else None
    for opt in fitted:
        m = table.optimizer == opt
        sub = table.subset(m)
        n = len(sub)
        p = _problem(sub, solver.Structure(np.zeros(n, int), np.zeros(n, int), 1, 1), objective)
        sol = solver.solve(p)
        E, A, B = (float(v) for v in sol.coef)
        values = {"E": E, "A": A, "B": B, "alpha": sol.alpha, "beta": sol.beta,
                  "allocation_exponent": sol.beta / (sol.alpha + sol.beta)}
        params.update({ParamKey(k, opt): v for k, v in values.items()})
        laws[opt] = ChinchillaLaw(sol.alpha, sol.beta, E, A, B)
        solves[opt] = _solve_record(opt, sol, p, sub, ["E", "A", "B"])
        if bootstrap:
            refits = refit(sol, p, counts_all[:, m])
            diagnostics[opt] = _refit_diagnostics(refits, ["E", "A", "B"])
            # a resample with fewer distinct cells than the law's 5 parameters has no unique optimum
            short = float(np.mean(distinct_cells(sub, counts_all[:, m]) < SEPARATE_MIN_CELLS))
            diagnostics[opt]["share_underdetermined"] = short
            undetermined.update({ParamKey(k, opt): short for k in SHARED_NAMES})
            a, b, c = refits.theta[:, 0], refits.theta[:, 1], refits.coef
            draws = {"E": c[:, 0], "A": c[:, 1], "B": c[:, 2], "alpha": a, "beta": b,
                     "allocation_exponent": b / (a + b)}
            samples.update({ParamKey(k, opt): v for k, v in draws.items()})
    kept = table.subset(np.isin(table.optimizer, fitted))
    result = FitResult(law="chinchilla", variant="separate", objective=objective, n_basis=table.n_basis,
                       reference=None, optimizers=tuple(fitted), params=ParamMap(params), laws=laws, solves=solves,
                       goodness=_goodness(kept, laws),
                       bootstrap_samples=_frozen_samples(samples) if bootstrap else None,
                       warnings=tuple(notes + _convergence_warnings(solves)), bootstrap_diagnostics=diagnostics,
                       exponent_bounds=solver.EXPONENT_BOUNDS, bootstrap_undetermined=ParamMap(undetermined))
    verdicts = {opt: _separate_verdict(result, table.subset(table.optimizer == opt), opt) for opt in fitted}
    return dataclasses.replace(result, identifiability=verdicts,
                               warnings=result.warnings + _verdict_warnings(verdicts, "separate law"))


def _separate_verdict(result: FitResult, sub: RunTable, opt: str) -> Identifiability:
    s = result.solves[opt]
    findings = identify.design_findings(sub.N, sub.D, 5)
    findings += identify.solve_findings(s.on_bound, s.converged, s.condition_number)
    findings += _interval_findings(result, opt)
    return Identifiability.of(findings)


def _interval_findings(result: FitResult, key: str | None) -> list[Finding]:
    if result.bootstrap_samples is None:
        return []
    diag = (result.bootstrap_diagnostics or {}).get(key) or {}
    short = diag.get("share_underdetermined", 0.0)
    if short > (1 - CI_LEVEL) / 2:
        return [Finding(Verdict.NOT_IDENTIFIED, f"{short:.0%} of bootstrap resamples draw fewer distinct cells than "
                                                "the law has parameters, so its intervals are unbounded")]
    ci = {name: result.ci.get((name, key)) for name in ("alpha", "beta")}
    out = identify.exponent_interval_findings(ci, {name: result.params[name, key] for name in ci})
    shares = {name: share for name, share in diag.get("share_at_zero", {}).items() if name == "E" or key is not None}
    return out + identify.zero_share_findings(shares)


def _verdict_warnings(verdicts: dict, what: str) -> tuple[FitWarning, ...]:
    return tuple(FitWarning(message=f"{what} {'' if opt is None else opt + ' '}is {v.verdict}: {'; '.join(v.reasons)}",
                            kind=WarningKind.IDENTIFIABILITY, optimizer=opt)
                 for opt, v in verdicts.items() if v.verdict != Verdict.IDENTIFIED)


# ----------------------------------------------------------------------------- shared

def _shared_structure(table: RunTable, optimizers: list[str], reference: str, variant: str) -> solver.Structure:
    # The reference takes group 0 so that A = A_0 and B = B_0.
    order = [reference] + [o for o in optimizers if o != reference]
    index = {o: i for i, o in enumerate(order)}
    g = np.array([index[o] for o in table.optimizer])
    zeros = np.zeros(len(table), dtype=int)
    n = len(order)
    if variant == "full":
        return solver.Structure(g, g, n, n)
    if variant == "rho_D":
        return solver.Structure(zeros, g, 1, n)
    return solver.Structure(g, zeros, n, 1)


def _check_reference(table: RunTable, reference: str) -> None:
    if reference not in table.optimizers:
        raise UserError(f"reference optimizer {reference!r} is not in the data (optimizers: "
                        f"{', '.join(table.optimizers)}); pass one of them with --reference")


def _shared_derived(theta_alpha, theta_beta, coef, order: list[str], variant: str) -> dict[ParamKey, np.ndarray]:
    """Named numbers from (alpha, beta, coef) arrays; works on one solution or a batch."""
    a, b = np.asarray(theta_alpha), np.asarray(theta_beta)
    n = len(order)
    n_a = n if variant in ("full", "rho_N") else 1
    E = coef[..., 0]
    A_o = coef[..., 1:1 + n_a]
    B_o = coef[..., 1 + n_a:]
    shared = {"E": E, "A": A_o[..., 0], "B": B_o[..., 0], "alpha": a, "beta": b, "allocation_exponent": b / (a + b)}
    out = {ParamKey(k): v for k, v in shared.items()}
    # A coefficient at zero or a tiny exponent sends a rho to 0 or infinity: a legitimate
    # (unidentified) value, reported as such, not a numerical fault.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i, opt in enumerate(order):
            out[ParamKey("rho_N", opt)] = (A_o[..., 0] / A_o[..., i]) ** (1 / a) if n_a > 1 else np.ones_like(a)
            out[ParamKey("rho_D", opt)] = (B_o[..., 0] / B_o[..., i]) ** (1 / b) if B_o.shape[-1] > 1 \
                else np.ones_like(b)
    return out


def eligible_for_shared(table: RunTable, reference: str, variant: str, notes: list[FitWarning]) -> RunTable:
    need = SHARED_MIN_CELLS[variant]
    keep = []
    for opt in table.optimizers:
        k = table.n_cells(opt)
        if opt != reference and k < need:
            notes.append(_coverage_warning(
                f"optimizer {opt!r} has {k} cell(s), fewer than the {need} the {variant} shared law needs "
                "for its rho's; left out (add runs for it)", opt))
        else:
            keep.append(opt)
    return table.subset(np.isin(table.optimizer, keep))


def fit_shared(table: RunTable, *, reference: str = "adamw", variant: str = "full", objective: str = "huber_log",
               bootstrap: int = 0, seed: int = 0) -> FitResult:
    """The shared-exponent law with per-optimizer rho_N, rho_D (see module docstring)."""
    if variant not in VARIANTS:
        raise UserError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    _check_reference(table, reference)
    notes: list[FitWarning] = []
    table = eligible_for_shared(table, reference, variant, notes)
    if table.n_cells(reference) < 3:
        notes.append(_coverage_warning(f"reference optimizer {reference!r} has only {table.n_cells(reference)} "
                                       "cell(s); the shared law's A and B rest on it", reference))
    order = [reference] + [o for o in table.optimizers if o != reference]
    structure = _shared_structure(table, order, reference, variant)
    p = _problem(table, structure, objective)
    sol = solver.solve(p)
    derived = _shared_derived(sol.alpha, sol.beta, sol.coef, order, variant)
    laws = {}
    n_a = structure.n_a
    for i, opt in enumerate(order):
        A_o = sol.coef[1 + (i if n_a > 1 else 0)]
        B_o = sol.coef[1 + n_a + (i if structure.n_b > 1 else 0)]
        laws[opt] = ChinchillaLaw(sol.alpha, sol.beta, float(sol.coef[0]), float(A_o), float(B_o))
    names = ["E"] + [f"A/{o}" for o in (order if n_a > 1 else ["shared"])] + \
        [f"B/{o}" for o in (order if structure.n_b > 1 else ["shared"])]
    solves = {None: _solve_record(None, sol, p, table, names)}
    samples, diagnostics, undetermined = None, {}, {}
    if bootstrap:
        counts = cell_bootstrap_counts(table, bootstrap, seed)
        refits = refit(sol, p, counts)
        diagnostics[None] = _refit_diagnostics(refits, names)
        samples = _frozen_samples(_shared_derived(refits.theta[:, 0], refits.theta[:, 1], refits.coef, order, variant))
        undetermined = _shared_undetermined(table, counts, order, structure, diagnostics[None])
    result = FitResult(law="shared", variant=variant, objective=objective, n_basis=table.n_basis, reference=reference,
                       optimizers=tuple(order), params=ParamMap({k: float(v) for k, v in derived.items()}), laws=laws,
                       solves=solves, goodness=_goodness(table, laws), bootstrap_samples=samples,
                       warnings=tuple(notes + _convergence_warnings(solves)), bootstrap_diagnostics=diagnostics,
                       exponent_bounds=solver.EXPONENT_BOUNDS, bootstrap_undetermined=ParamMap(undetermined))
    verdicts = _shared_verdicts(result, table, structure)
    return dataclasses.replace(result, identifiability=verdicts,
                               warnings=result.warnings + _verdict_warnings(verdicts, f"shared law ({variant})"))


def _shared_undetermined(table: RunTable, counts: np.ndarray, order: list[str], structure: solver.Structure,
                         diagnostics: dict) -> dict[ParamKey, float]:
    """Share of resamples that cannot determine each parameter: the whole law when they draw fewer
    distinct cells than it has parameters, an optimizer's rho's when they draw fewer of its cells
    than it has rho's."""
    overall = distinct_cells(table, counts) < 2 + structure.n_coef
    out = {ParamKey(k): float(overall.mean()) for k in SHARED_NAMES}
    own = int(structure.n_a > 1) + int(structure.n_b > 1)
    per_opt = {}
    for opt in order[1:]:
        m = table.optimizer == opt
        short = overall | (distinct_cells(table.subset(m), counts[:, m]) < own)
        per_opt[opt] = float(short.mean())
        out.update({ParamKey(k, opt): per_opt[opt] for k in ("rho_N", "rho_D")})
    diagnostics["share_underdetermined"] = float(overall.mean())
    diagnostics["share_underdetermined_by_optimizer"] = per_opt
    return out


def _shared_verdicts(result: FitResult, table: RunTable, structure: solver.Structure) -> dict:
    """The shared fit's verdict (key None) and each non-reference optimizer's (its rho's)."""
    s = result.solves[None]
    findings = identify.design_findings(table.N, table.D, 2 + structure.n_coef, groups=table.optimizer)
    findings += identify.solve_findings([f for f in s.on_bound if "coefficient" not in f], s.converged,
                                        s.condition_number)
    findings += _interval_findings(result, None)
    verdicts = {None: Identifiability.of(findings)}
    free = [name for name, n_groups in (("rho_N", structure.n_a), ("rho_D", structure.n_b)) if n_groups > 1]
    diag = (result.bootstrap_diagnostics or {}).get(None) or {}
    for opt in result.optimizers:
        if opt == result.reference:
            continue
        m = table.optimizer == opt
        cells = table.n_cells(opt)
        found = []
        if cells <= len(free):
            found.append(Finding(Verdict.WEAK, f"{cells} cell(s) for its {len(free)} rho('s): exactly determined"))
        law = result.laws[opt]
        for name, values, coef, term in (("rho_N", table.N[m], law.A, "A"), ("rho_D", table.D[m], law.B, "B")):
            if name not in free:
                continue
            other = "alpha" if name == "rho_N" else "beta"
            if len(np.unique(values)) < 2:
                found.append(Finding(Verdict.WEAK, f"one {name[-1]} value: {name} rests on the shared {other} alone"))
            if coef <= 0:
                found.append(Finding(Verdict.NOT_IDENTIFIED, f"its {term} is 0, so {name} is infinite"))
            if result.bootstrap_samples is not None:
                found += identify.rho_interval_findings(name, result.ci.get((name, opt)))
            share = diag.get("share_at_zero", {}).get(f"{term}/{opt}", 0.0)
            found += identify.zero_share_findings({f"{term}/{opt}": share})
        verdicts[opt] = Identifiability.of(found)
    return verdicts


# ----------------------------------------------------------------------------- compute

def cost_per_ND(table: RunTable, cost: str = "flops") -> dict[str, float]:
    """Each optimizer's cost of one unit of N*D: median over its runs of
    flops x step_cost / (N D) (6 x step_cost when flops are missing), or wallclock_s / (N D)."""
    if cost not in COST_BASES:
        raise UserError(f"cost must be one of {', '.join(COST_BASES)}, got {cost!r}")
    out = {}
    for opt in table.optimizers:
        m = table.optimizer == opt
        if cost == "wallclock":
            wc = table.wallclock_s[m]
            if not np.isfinite(wc).any():
                raise UserError(f"optimizer {opt!r} has no wallclock_s in its runs; use --cost flops")
            ratio = wc / (table.N[m] * table.D[m])
        else:
            flops = np.where(np.isfinite(table.flops[m]), table.flops[m], 6.0 * table.N[m] * table.D[m])
            ratio = flops * table.step_cost[m] / (table.N[m] * table.D[m])
        out[opt] = float(np.nanmedian(ratio))
    return out


def fit_compute(table: RunTable, *, reference: str = "adamw", variant: str = "full", objective: str = "huber_log",
                bootstrap: int = 0, seed: int = 0, cost: str = "flops", n_budgets: int = 5) -> FitResult:
    """Shared law plus compute: multiplier m_o = rho_N rho_D k_ref / k_o (the reference needs
    m_o times the compute to match optimizer o's compute-optimal loss), and N*(C), D*(C).

    Allocations are reported at ``n_budgets`` budgets spanning the data's cost range; a
    warning is raised when a budget or the optimal D/N lies outside the data's range.
    """
    shared = fit_shared(table, reference=reference, variant=variant, objective=objective, bootstrap=bootstrap,
                        seed=seed)
    notes = list(shared.warnings)
    table = table.subset(np.isin(table.optimizer, shared.optimizers))
    k = cost_per_ND(table, cost)
    basis, measured = cost_basis(table, cost)
    if not measured:
        notes.append(FitWarning(message=f"compute law: {basis}; the compute multiplier then counts only the "
                                        "loss-per-token gains (give step costs or use --cost wallclock)"))
    params = dict(shared.params)
    samples = dict(shared.bootstrap_samples) if shared.bootstrap_samples is not None else None
    undetermined = dict(shared.bootstrap_undetermined or {})
    for opt in shared.optimizers:
        params[ParamKey("cost_per_ND", opt)] = k[opt]
        params[ParamKey("compute_multiplier", opt)] = \
            params[ParamKey("rho_N", opt)] * params[ParamKey("rho_D", opt)] * k[reference] / k[opt]
        if ("rho_D", opt) in undetermined:
            undetermined[ParamKey("compute_multiplier", opt)] = undetermined[ParamKey("rho_D", opt)]
        if samples is not None:
            samples[ParamKey("compute_multiplier", opt)] = \
                samples[ParamKey("rho_N", opt)] * samples[ParamKey("rho_D", opt)] * k[reference] / k[opt]
    allocation = {}
    for opt in shared.optimizers:
        m = table.optimizer == opt
        data_cost = k[opt] * table.N[m] * table.D[m]
        ratio = table.D[m] / table.N[m]
        budgets = np.geomspace(data_cost.min(), data_cost.max(), n_budgets) if data_cost.min() < data_cost.max() \
            else np.array([data_cost.min()])
        N_opt, D_opt, L_opt = shared.laws[opt].compute_optimal(k[opt], budgets)
        rows = []
        for j, C in enumerate(budgets):
            row = {"C": float(C), "N_opt": float(N_opt[j]), "D_opt": float(D_opt[j]), "loss_opt": float(L_opt[j]),
                   "tokens_per_param": float(D_opt[j] / N_opt[j])}
            if samples is not None:
                Nb, Db = _allocation_samples(samples, opt, reference, k, C)
                row["N_opt_ci"] = list(percentile_intervals({"x": Nb}, CI_LEVEL).get("x", (np.nan, np.nan)))
                row["D_opt_ci"] = list(percentile_intervals({"x": Db}, CI_LEVEL).get("x", (np.nan, np.nan)))
            outside = []
            if not ratio.min() * (1 - 1e-6) <= D_opt[j] / N_opt[j] <= ratio.max() * (1 + 1e-6):
                outside.append(f"D/N={D_opt[j] / N_opt[j]:.3g} outside the data's [{ratio.min():.3g}, {ratio.max():.3g}]")
            row["extrapolated"] = outside
            rows.append(row)
        allocation[opt] = {"budgets": rows, "data_cost_range": [float(data_cost.min()), float(data_cost.max())],
                           "data_tokens_per_param_range": [float(ratio.min()), float(ratio.max())]}
        extrapolated = [r for r in rows if r["extrapolated"]]
        if extrapolated:
            notes.append(FitWarning(
                message=f"{opt}: compute-optimal allocation at {len(extrapolated)} of {len(rows)} budgets has "
                        f"{extrapolated[0]['extrapolated'][0]}: an extrapolation",
                kind=WarningKind.EXTRAPOLATION, optimizer=opt))
    return dataclasses.replace(
        shared, law="compute", params=ParamMap(params),
        bootstrap_samples=_frozen_samples(samples) if samples is not None else None, warnings=tuple(notes),
        cost_basis=basis, cost_option=cost, cost_measured=measured, cost_per_ND=k, allocation=allocation,
        bootstrap_undetermined=ParamMap(undetermined))


def cost_basis(table: RunTable, cost: str) -> tuple[str, bool]:
    """How the compute law charged each run, in words, and whether measured costs were used
    for every optimizer (a step-cost ratio or wall-clock time; FLOPs alone count 6ND-like
    arithmetic, not what a step of each optimizer costs)."""
    if cost == "wallclock":
        return "measured wall-clock time per run", True
    with_step = [o for o in table.optimizers if table.step_cost_given[table.optimizer == o].any()]
    without = [o for o in table.optimizers if o not in with_step]
    flops = "FLOPs from the data" if np.isfinite(table.flops).any() else "6ND"
    if not with_step:
        if flops == "6ND":
            return "equal step cost assumed (6ND)", False
        return "FLOPs from the data, equal step cost per FLOP assumed for every optimizer", False
    measured = f"measured step cost charged ({flops} x measured step-cost ratio)"
    if not without:
        return measured, True
    return f"{measured} for {', '.join(with_step)}; equal step cost assumed for {', '.join(without)}", False


def _allocation_samples(samples, opt, reference, k, C):
    # Through the rescaling L_o(N, D) = L_ref(rho_N N, rho_D D): optimizer o at budget C
    # behaves like the reference at C' = C rho_N rho_D k_ref / k_o.
    a, b = samples[ParamKey("alpha")], samples[ParamKey("beta")]
    rn, rd = samples[ParamKey("rho_N", opt)], samples[ParamKey("rho_D", opt)]
    # Replicates with A or B at zero have no finite optimum (N* or D* infinite): kept as such.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        C_ref = C * rn * rd * k[reference] / k[opt]
        N_ref, D_ref, _ = compute_optimal(a, b, samples[ParamKey("E")], samples[ParamKey("A")],
                                          samples[ParamKey("B")], k[reference], C_ref)
        return N_ref / rn, D_ref / rd


def check_budget(result: FitResult, table: RunTable, C: float, optimizer: str) -> list[FitWarning]:
    """Warnings for an allocation asked at budget C outside the optimizer's data cost range."""
    k = result.cost_per_ND[optimizer]
    m = table.optimizer == optimizer
    lo, hi = (k * table.N[m] * table.D[m]).min(), (k * table.N[m] * table.D[m]).max()
    if C < lo or C > hi:
        return [FitWarning(message=f"{optimizer}: budget C={C:.3g} is outside the data's cost range "
                                   f"[{lo:.3g}, {hi:.3g}]: an extrapolation",
                           kind=WarningKind.EXTRAPOLATION, optimizer=optimizer)]
    return []
