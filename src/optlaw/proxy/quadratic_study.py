"""The quadratic (N, D) study: grid points as run records, laws fitted by ``optlaw.fit``,
fitted exponents against the closed-form predictions of ``quadratic_theory``.

Two regimes by default: undamped preconditioners (they change the D exponent) and
damped ones (below the damping every optimizer is GD with a rescaled step, so the
shared-exponent law holds with rho_D = ((1+eps)/eps)^q).

Each regime is also refitted where the study's additive law holds (``additive_regime_refit``):
the same fitter on the exact parts recombined as the law assumes them, at long horizons.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from optlaw.config import as_config, compose, to_plain
from optlaw.config.proxy import QuadraticStudyConfig
from optlaw.jsonio import write_json_atomic
from optlaw.proxy import point
from optlaw.proxy.optimizers import check_optimizers
from optlaw.proxy.quadratic_theory import predicted_exponents

# The exponents read off the exact loss parts "follow the closed form" within this share (the
# finite D range alone puts them 4-10% above it: docs/proxy.md).
PARTS_TOLERANCE = 0.15
ADDITIVE_FORM_CAUSE = (
    "the Chinchilla form adds the approximation and optimisation errors, while in this model they overlap "
    "(a mode beyond N is counted once, in the approximation part), so near the N-D crossover the sum "
    "overstates the reducible loss by up to 2x and the fitted exponents are biased")


def check_study_config(cfg: dict) -> dict:
    """The study config checked against its schema (QuadraticStudyConfig) and the proxy optimizer keys;
    returned as a plain dict with every key."""
    study = as_config(QuadraticStudyConfig, cfg, "")
    check_optimizers(study.optimizers)
    return to_plain(study)


def run_points(cfg: dict, out: Path) -> dict[str, Path]:
    """Write one run record per (regime, optimizer, N, D); returns regime -> records folder."""
    base = to_plain(compose("task_quadratic", []))
    for key in ("s", "source_r", "feature_dim", "irreducible_loss", "step_size_multipliers", "timing_repeats"):
        base[key] = cfg[key]
    folders = {}
    total = len(cfg["regimes"]) * len(cfg["optimizers"]) * len(cfg["N_values"]) * len(cfg["D_values"])
    done, start = 0, time.perf_counter()
    for regime in cfg["regimes"]:
        folder = out / "runs" / regime["name"]
        folders[regime["name"]] = folder
        for name in cfg["optimizers"]:
            for N in cfg["N_values"]:
                for D in cfg["D_values"]:
                    point_cfg = dict(base, proxy_optimizer=name, N=int(N), steps=int(D),
                                     damping=float(regime["damping"]), sweep_name=f"quadratic-{regime['name']}")
                    point_cfg["run_dir"] = str(folder / point.run_id(point_cfg))
                    point.run(point_cfg)
                    done += 1
            if cfg["progress"]:
                print(f"[{done}/{total}] {regime['name']} {name}  {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    return folders


def _fit_regime(folder: Path, cfg: dict, damping: float) -> dict:
    from optlaw.fit import fit_separate, fit_shared, load_runs

    table = load_runs([folder])
    notes = []
    optimizers = list(table.optimizers)
    if damping == 0 and "ngd" in optimizers:
        # Undamped ngd with exact curvature reaches the best N-feature model in one step:
        # its loss does not depend on D, so no B/D^beta term exists to fit.
        table = table.subset(table.optimizer != "ngd")
        notes.append("ngd left out of the fits: undamped, it converges in one step (no D dependence)")
    boot = int(cfg["bootstrap"])
    separate = fit_separate(table, bootstrap=boot)
    shared = fit_shared(table, reference=cfg["reference"], bootstrap=boot)
    rows = []
    for name in table.optimizers:
        pred = predicted_exponents(name, cfg["s"], cfg["source_r"], damping)
        rows.append({
            **part_exponents(cfg, name, damping),
            "optimizer": name,
            "alpha_fit": separate.params["alpha", name], "alpha_ci": separate.ci.get(("alpha", name)),
            "alpha_pred": pred["alpha"],
            "beta_fit": separate.params["beta", name], "beta_ci": separate.ci.get(("beta", name)),
            "beta_pred": pred["beta"],
            "rho_D_fit": shared.params.get(("rho_D", name)), "rho_D_ci": shared.ci.get(("rho_D", name)),
            "rho_D_pred": pred["rho_D"],
            "rho_N_fit": shared.params.get(("rho_N", name)),
        })
    for r in rows:
        r["rho_D_part"] = rho_D_from_parts(cfg, r["optimizer"], cfg["reference"], damping) if damping > 0 else None
    good_sep = _mean_rmse(separate.goodness)
    good_shared = _mean_rmse(shared.goodness)
    findings = closed_form_findings(rows, damping, cfg["reference"])
    refit = additive_regime_refit(cfg, damping, list(table.optimizers))
    findings.append(refit["finding"])
    return {"rows": rows, "notes": notes, "separate": separate.to_json(), "shared": shared.to_json(),
            "shared_alpha": shared.params["alpha"], "shared_beta": shared.params["beta"],
            "shared_law_exists": damping > 0, "findings": findings, "additive_regime": refit,
            "goodness_separate": good_sep, "goodness_shared": good_shared}


def additive_regime_refit(cfg: dict, damping: float, optimizers: list[str]) -> dict:
    """The laws refitted where the study's additive law holds, against the closed form.

    The grid's losses break the additive form in two ways (docs/proxy.md): a mode beyond N is
    counted once, in the approximation part, so the two error terms overlap (the overlap falls
    only as (frontier/N)^(2rs), below 2% in a handful of cells of the default grid, so no cell
    subset of the real losses is additive); and at short horizons the learning frontier sits
    among the modes the damping still reshapes (lambda_k not << eps), where no optimizer is yet
    rescaled GD. The additive law's own regime is therefore built from the exact parts:
    L = E + approximation(N) + optimisation part of an unbounded model (N = feature_dim) at D, each
    at its tuned step, for D >= ``additive_refit_min_steps`` (long horizon). These are not runs of
    the N-coordinate model; they are the losses the law assumes, fitted by the same fitter.
    """
    from optlaw.fit import RunTable, fit_separate, fit_shared

    steps = sorted(int(D) for D in cfg["D_values"] if int(D) >= int(cfg["additive_refit_min_steps"]))
    setting = {"min_steps": int(cfg["additive_refit_min_steps"]), "D_values": steps,
               "N_values": sorted(int(N) for N in cfg["N_values"]),
               "loss": "E + approximation(N) + optimisation part of an unbounded model (N = feature_dim) at D"}
    if len(steps) < 3:
        return {**setting, "rows": [], "finding": (
            f"Additive-regime refit skipped: fewer than 3 D values >= additive_refit_min_steps = "
            f"{cfg['additive_refit_min_steps']} in the grid.")}
    problem = point._quadratic_problem(int(cfg["feature_dim"]), float(cfg["s"]), float(cfg["source_r"]),
                                       float(cfg["irreducible_loss"]))
    mults = cfg["step_size_multipliers"]
    cells = []
    for name in optimizers:
        for D in steps:
            unbounded = problem.parts(problem.feature_dim, D, name, damping, mults).optimization
            cells += [(name, N, D, problem.irreducible + problem.approximation(N) + unbounded)
                      for N in setting["N_values"]]
    names, N, D, loss = zip(*cells)
    table = RunTable.from_columns(names, N, D, loss)
    boot = int(cfg["bootstrap"])
    separate = fit_separate(table, bootstrap=boot)
    # undamped, no shared law exists (the exponents differ): only the separate laws are refitted
    shared = (fit_shared(table, reference=cfg["reference"], bootstrap=boot)
              if len(optimizers) > 1 and damping > 0 else None)
    rows = []
    for name in optimizers:
        pred = predicted_exponents(name, cfg["s"], cfg["source_r"], damping)
        row = {"optimizer": name}
        for key in ("alpha", "beta"):
            ci = separate.ci.get((key, name))
            row.update({f"{key}_fit": separate.params["alpha" if key == "alpha" else "beta", name],
                        f"{key}_ci": list(ci) if ci else None, f"{key}_pred": pred[key],
                        f"{key}_matches": _covers(ci, pred[key])})
        fitted = shared.params.get(("rho_D", name)) if shared is not None else None
        ci = shared.ci.get(("rho_D", name)) if shared is not None else None
        row.update({"rho_D_fit": fitted, "rho_D_ci": list(ci) if ci else None, "rho_D_pred": pred["rho_D"],
                    "rho_D_matches": _covers(ci, pred["rho_D"]) if damping > 0 and name != cfg["reference"]
                    else None})
        rows.append(row)
    return {**setting, "rows": rows, "finding": _refit_finding(rows, setting, damping)}


def _refit_finding(rows: list[dict], setting: dict, damping: float) -> str:
    """One sentence: how many of the refit's intervals hold their closed form, and what misses."""
    counts = []
    missed = []
    for key in ("beta", "rho_D", "alpha"):
        judged = [r for r in rows if r[f"{key}_matches"] is not None]
        if not judged:
            continue
        counts.append(f"{key} {sum(r[f'{key}_matches'] for r in judged)} of {len(judged)}")
        missed += [f"{r['optimizer']} {key} {r[f'{key}_fit']:.3f} [{r[f'{key}_ci'][0]:.3f}, "
                   f"{r[f'{key}_ci'][1]:.3f}] vs {r[f'{key}_pred']:.3f}"
                   for r in judged if not r[f"{key}_matches"]]
    where = (f"Refitted where the additive law holds (the exact parts recombined additively, D >= "
             f"{setting['min_steps']}: long horizon{', frontier below the damping scale' if damping > 0 else ''})")
    if not counts:   # no bootstrap: values only, nothing to cover
        fitted = ", ".join(f"{r['optimizer']} beta {r['beta_fit']:.3f} vs {r['beta_pred']:.3f}" for r in rows
                           if r.get("beta_pred") is not None)
        return f"{where}, without intervals (bootstrap = 0): {fitted}."
    text = f"{where}: the 95% interval holds the closed form for {', '.join(counts)}."
    if missed:
        text += f" Outside: {'; '.join(missed)}."
        if any(" alpha " in m for m in missed):
            N0 = setting["N_values"][0]
            text += (" alpha's closed form 2rs is the large-N limit: the approximation sum over k > N goes as "
                     f"(N + 1/2)^-2rs, whose log-log slope at N = {N0} is {N0 / (N0 + 0.5):.3f} x 2rs, and the "
                     "noise-free losses make the intervals as narrow as that small misfit.")
    return text


def _covers(ci, value) -> bool | None:
    if ci is None or value is None or ci[0] is None or ci[1] is None:
        return None
    return bool(ci[0] <= value <= ci[1])


def closed_form_findings(rows: list[dict], damping: float, reference: str) -> list[str]:
    """Fitted laws against the closed form, in words: every fitted interval that excludes its
    closed-form value, with the cause (told apart by the exponents read off the exact parts),
    and, undamped, that no shared law exists. Marks each row's ``*_matches`` (None: no interval)."""
    findings = []
    if damping == 0:
        findings.append("No shared-exponent law exists in this regime: undamped preconditioners change the D "
                        "exponent (beta = 2r/(1-q)), so no constant rho_D maps one optimizer onto another. The "
                        "shared law's fit is reported only to measure how much worse it fits; its rho_D values "
                        "are not factors of any law.")
    for r in rows:
        r["alpha_matches"] = _covers(r["alpha_ci"], r["alpha_pred"])
        r["beta_matches"] = _covers(r["beta_ci"], r["beta_pred"])
        r["rho_D_matches"] = (_covers(r["rho_D_ci"], r["rho_D_pred"])
                              if damping > 0 and r["optimizer"] != reference else None)
    for name in ("alpha", "beta", "rho_D"):
        missed = [r for r in rows if r[f"{name}_matches"] is False]
        if not missed:
            continue
        fits = ", ".join(f"{r['optimizer']} {r[f'{name}_fit']:.3f} [{r[f'{name}_ci'][0]:.3f}, "
                         f"{r[f'{name}_ci'][1]:.3f}] vs {r[f'{name}_pred']:.3f}" for r in missed)
        if name == "rho_D":
            parts = [r.get("rho_D_part") for r in missed]
        else:
            parts = [r.get(f"{name}_part") for r in missed]
        parts_follow = all(v is not None and abs(v - r[f"{name}_pred"]) <= PARTS_TOLERANCE * r[f"{name}_pred"]
                           for v, r in zip(parts, missed))
        cause = (f"The exact loss parts give {', '.join(f'{v:.3f}' for v in parts)}, within "
                 f"{PARTS_TOLERANCE:.0%} of the closed form, so the theory holds and the cause is the fitted "
                 f"form: {ADDITIVE_FORM_CAUSE}"
                 + (" (rho_D = (B_ref/B_o)^(1/beta) inherits the bias of beta)." if name == "rho_D" else ".")
                 if parts_follow else
                 "The exact loss parts do not follow the closed form either (" +
                 ", ".join("n/a" if v is None else f"{v:.3f}" for v in parts) +
                 "): the grid is not in the asymptotic regime the closed form describes.")
        findings.append(f"{name}: the fitted 95% interval excludes the closed form for "
                        f"{len(missed)} of {sum(r[f'{name}_matches'] is not None for r in rows)} fits ({fits}). "
                        + cause)
    return findings


def part_exponents(cfg: dict, optimizer: str, damping: float) -> dict:
    """Exponents read directly off the exact loss parts (no Chinchilla form involved).

    alpha: slope of the approximation part over the N grid. beta: slope of the optimisation
    part over D for a model far larger than anything learned (N = feature_dim / 16), using
    only D whose learning frontier (2 D rho)^(1/(s(1-q))) stays below N / 8.
    """
    from optlaw.proxy.optimizers import PRECONDITIONER_POWER

    problem = point._quadratic_problem(int(cfg["feature_dim"]), float(cfg["s"]), float(cfg["source_r"]),
                                       float(cfg["irreducible_loss"]))
    N_values = sorted(cfg["N_values"])
    approx = [problem.approximation(N) for N in N_values]
    alpha = -np.polyfit(np.log(N_values), np.log(approx), 1)[0]
    q = PRECONDITIONER_POWER[optimizer]
    if damping > 0:
        rate, rho = float(cfg["s"]), ((1 + damping) / damping) ** q
    else:
        rate, rho = float(cfg["s"]) * (1 - q), 1.0
    N_big = problem.feature_dim // 16
    if q >= 1 and damping == 0:
        return {"alpha_part": float(alpha), "beta_part": None, "log_B_part": None, "beta_part_D": []}
    Ds = [D for D in sorted(cfg["D_values"]) if (2.0 * D * rho) ** (1.0 / rate) < N_big / 8]
    opt = [problem.parts(N_big, int(D), optimizer, damping, cfg["step_size_multipliers"]).optimization for D in Ds]
    if len(Ds) < 2:
        return {"alpha_part": float(alpha), "beta_part": None, "log_B_part": None, "beta_part_D": Ds}
    slope, log_B = np.polyfit(np.log(Ds), np.log(opt), 1)
    return {"alpha_part": float(alpha), "beta_part": float(-slope), "log_B_part": float(log_B), "beta_part_D": Ds}


def rho_D_from_parts(cfg: dict, optimizer: str, reference: str, damping: float) -> float:
    """The clock factor rho with opt_ref(rho D) = opt_optimizer(D) at the largest D of the grid.

    Read off the exact optimisation parts of a model far larger than anything learned
    (N = feature_dim / 16), with both optimizers at their tuned step multipliers.
    """
    from scipy.optimize import brentq

    problem = point._quadratic_problem(int(cfg["feature_dim"]), float(cfg["s"]), float(cfg["source_r"]),
                                       float(cfg["irreducible_loss"]))
    N_big, D = problem.feature_dim // 16, int(max(cfg["D_values"]))
    mults = cfg["step_size_multipliers"]
    target = problem.parts(N_big, D, optimizer, damping, mults).optimization
    ref = problem.parts(N_big, D, reference, damping, mults)
    ref_modes = problem.modes(N_big, reference, damping)
    gap = lambda log_rho: np.log(ref_modes.excess(np.exp(log_rho) * D, ref.eta)) - np.log(target)  # noqa: E731
    lo, hi = np.log(1e-3), np.log(1e3)
    if gap(lo) * gap(hi) > 0:
        return float("nan")
    return float(np.exp(brentq(gap, lo, hi)))


def _mean_rmse(goodness: dict) -> float | None:
    """Point-weighted RMSE of a fit over its optimizers (the fit stage reports it per optimizer)."""
    parts = [(g.n_points, g.rmse) for g in goodness.values()]
    if not parts:
        return None
    n = sum(p[0] for p in parts)
    return float(np.sqrt(sum(k * r * r for k, r in parts) / n))


def _decomposition_example(cfg: dict) -> list[dict]:
    """Loss parts of gd and sign at a middle N over the D grid (the exact split, for the report)."""
    from optlaw.proxy.quadratic import QuadraticProblem

    problem = QuadraticProblem(cfg["feature_dim"], cfg["s"], cfg["source_r"], cfg["irreducible_loss"])
    N = int(sorted(cfg["N_values"])[len(cfg["N_values"]) // 2])
    out = []
    for name in ("gd", "sign"):
        for D in cfg["D_values"]:
            p = problem.parts(N, int(D), name, 0.0, cfg["step_size_multipliers"])
            out.append({"optimizer": name, "N": N, "D": int(D), "irreducible": p.irreducible,
                        "approximation": p.approximation, "optimization": p.optimization, "total": p.total})
    return out


def run_study(cfg: dict, out) -> dict:
    out = Path(out)
    cfg = check_study_config(cfg)
    start = time.perf_counter()
    folders = run_points(cfg, out)
    regimes = {}
    for regime in cfg["regimes"]:
        regimes[regime["name"]] = _fit_regime(folders[regime["name"]], cfg, float(regime["damping"]))
        regimes[regime["name"]]["damping"] = float(regime["damping"])
        regimes[regime["name"]]["name"] = regime["name"]
    decomposition = _decomposition_example(cfg)
    summary = {name: {r["optimizer"]: {"alpha": [round(r["alpha_fit"], 3), r["alpha_pred"]],
                                       "beta": [round(r["beta_fit"], 3), r["beta_pred"]],
                                       "rho_D": ([None if r["rho_D_fit"] is None else round(r["rho_D_fit"], 3),
                                                  r["rho_D_pred"]] if reg["shared_law_exists"] else
                                                 "no shared law exists here (theory); not fitted as a conclusion")}
                      for r in reg["rows"]}
               for name, reg in regimes.items()}
    findings = {name: reg["findings"] for name, reg in regimes.items()}
    result = {"summary": {"fitted_vs_predicted [fit, prediction]": summary, "findings": findings},
              "regimes": regimes,
              "decomposition": decomposition, "setting": {k: cfg[k] for k in (
                  "s", "source_r", "feature_dim", "irreducible_loss", "N_values", "D_values", "regimes",
                  "reference", "bootstrap")},
              "runtime_s": time.perf_counter() - start}
    write_json_atomic(out / "quadratic.json", result)
    _plot(out, regimes, decomposition, cfg)
    (out / "report.md").write_text(_report(result, cfg))
    return result


def _plot(out: Path, regimes: dict, decomposition: list[dict], cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optlaw.fit import load_runs
    from optlaw.proxy.rf_report import COLORS

    fig, axes = plt.subplots(1, len(regimes) + 2, figsize=(4.6 * (len(regimes) + 2), 4.0), layout="constrained")
    N_top = max(cfg["N_values"])
    for ax, (name, reg) in zip(axes, regimes.items()):
        table = load_runs([out / "runs" / name])
        for o in table.optimizers:
            m = (table.optimizer == o) & (table.N == N_top)
            order = np.argsort(table.D[m])
            # diag coincides with sign here (diagonal curvature): crosses on sign's line so both show
            style = {"ls": "", "marker": "x", "ms": 6, "zorder": 3} if o == "diag" else {"ls": "-", "marker": "o", "ms": 3}
            ax.loglog(table.D[m][order], table.loss[m][order] - cfg["irreducible_loss"], color=COLORS.get(o),
                      label="diag (= sign here)" if o == "diag" else o, **style)
        ax.set_title(f"{name} (damping {reg['damping']:g}), N = {N_top}")
        ax.set_xlabel("D (optimizer steps)")
        ax.set_ylabel("L - E")
        ax.legend(fontsize=7)
    ax = axes[len(regimes)]
    for name, style in (("gd", "-"), ("sign", "--")):
        rows = [r for r in decomposition if r["optimizer"] == name]
        D = [r["D"] for r in rows]
        if name == "gd":   # the approximation part does not depend on the optimizer
            ax.loglog(D, [r["approximation"] for r in rows], "-", color="tab:blue", label="approximation (both)")
        ax.loglog(D, [r["optimization"] for r in rows], style, color="tab:red", label=f"optimization ({name})")
    ax.axhline(cfg["irreducible_loss"], color="k", lw=0.8, label="irreducible")
    top = max(max(r["optimization"] for r in decomposition), cfg["irreducible_loss"])
    ax.set_ylim(1e-5, top * 3)  # the optimisation part of sign falls to round-off; the interesting range is above
    ax.set_title(f"exact loss parts, N = {decomposition[0]['N']}, undamped")
    ax.set_xlabel("D (optimizer steps)")
    ax.legend(fontsize=7)
    _plot_beta_intervals(axes[-1], regimes)
    fig.savefig(out / "quadratic_loss_vs_D.png", dpi=110)
    plt.close(fig)


def _plot_beta_intervals(ax, regimes: dict) -> None:
    """Fitted beta with its 95% interval per (regime, optimizer): the grid's fit (open) beside the refit
    where the additive law holds (filled), and the closed form (black tick)."""
    labels, y = [], 0
    for name, reg in regimes.items():
        refit = {r["optimizer"]: r for r in (reg.get("additive_regime") or {}).get("rows", [])}
        for r in reg["rows"]:
            for row, shift, fill in ((r, 0.17, "white"), (refit.get(r["optimizer"]), -0.17, "tab:blue")):
                if row is None or row.get("beta_ci") is None:
                    continue
                ax.plot(row["beta_ci"], [y + shift] * 2, color="tab:blue", lw=1.5)
                ax.plot(row["beta_fit"], y + shift, "o", mfc=fill, mec="tab:blue", ms=5)
            if r.get("beta_pred") is not None:
                ax.plot(r["beta_pred"], y, marker="|", color="black", ms=18, mew=1.2, zorder=1)
            labels.append(f"{name}: {r['optimizer']}")
            y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel("beta")
    ax.set_title("beta, 95% CI: grid fit (open),\nadditive-regime refit (filled), closed form (|)", fontsize=9)


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _num(x, nd=3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _cell(row: dict | None, key: str) -> str:
    if row is None or row.get(f"{key}_fit") is None:
        return "-"
    mark = {True: "", False: " (excludes)", None: ""}[row.get(f"{key}_matches")]
    return f"{row[f'{key}_fit']:.3f}{_ci(row.get(f'{key}_ci'))}{mark}"


def _side_by_side(reg: dict) -> list[str]:
    """The grid's fit and the additive-regime refit of one regime, column by column."""
    refit = reg.get("additive_regime") or {}
    if not refit.get("rows"):
        return [f"Additive-regime refit: {refit.get('finding', 'not run')}", ""]
    by_opt = {r["optimizer"]: r for r in refit["rows"]}
    keys = ("alpha", "beta", "rho_D") if reg["shared_law_exists"] else ("alpha", "beta")
    head = " | ".join(f"{k}: grid fit | {k}: additive-regime refit | {k} predicted" for k in keys)
    lines = [f"### Regime `{reg.get('name', '')}`: the grid's fit beside the refit where the additive law holds", "",
             f"Refit: {refit['loss']}, D in {refit['D_values']} (>= {refit['min_steps']}), N in {refit['N_values']}; "
             "same fitter and bootstrap. '(excludes)': the 95% interval excludes the closed form.", "",
             f"| optimizer | {head} |", "|---" * (1 + 3 * len(keys)) + "|"]
    for r in reg["rows"]:
        o = by_opt.get(r["optimizer"])
        cells = []
        for k in keys:
            pred = r.get(f"{k}_pred")
            cells += [_cell(r, k), _cell(o, k), _num(pred)]
        lines.append(f"| {r['optimizer']} | " + " | ".join(cells) + " |")
    return lines + ["", refit["finding"], ""]


def _report(result: dict, cfg: dict) -> str:
    lines = ["# Convex quadratic proxy: fitted laws against closed-form predictions", "",
             f"Spectrum k^-{cfg['s']}, source r = {cfg['source_r']}, E = {cfg['irreducible_loss']}, "
             f"N in {list(cfg['N_values'])}, D in {list(cfg['D_values'])}. Fits: optlaw.fit (Huber on log loss, "
             f"{cfg['bootstrap']} cell-bootstrap replicates, 95% intervals). Predictions: docs/proxy.md. "
             "'from parts' = log-log slopes of the exact approximation part (over N) and optimisation part "
             "(over D, at N = feature_dim/16), i.e. the exponents with no Chinchilla form in between. "
             f"Runtime {result['runtime_s']:.0f} s.", ""]
    lines += ["## Findings", ""]
    for name, reg in result["regimes"].items():
        lines += [f"- `{name}`: {f}" for f in reg["findings"]] or [f"- `{name}`: every fitted interval covers its "
                                                                    "closed form."]
    lines.append("")
    for name, reg in result["regimes"].items():
        rho_head = "rho_D fit (shared law)" if reg["shared_law_exists"] else "rho_D fit (no shared law exists here)"
        lines += [f"## Regime `{name}` (damping {reg['damping']:g})", "",
                  "| optimizer | alpha fit | alpha from parts | alpha predicted | beta fit | beta from parts | "
                  f"beta predicted | {rho_head} | rho_D from parts (largest D) | rho_D predicted |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in reg["rows"]:
            beta_pred = "one step (inf)" if r["beta_pred"] is None and reg["damping"] == 0 else _num(r["beta_pred"])
            lines.append(f"| {r['optimizer']} | {r['alpha_fit']:.3f}{_ci(r['alpha_ci'])} | {_num(r['alpha_part'])} | "
                         f"{r['alpha_pred']:.3f} | {r['beta_fit']:.3f}{_ci(r['beta_ci'])} | {_num(r['beta_part'])} | "
                         f"{beta_pred} | "
                         f"{_num(r['rho_D_fit'])}{_ci(r['rho_D_ci'])} | {_num(r.get('rho_D_part'))} | "
                         f"{_num(r['rho_D_pred'])} |")
        gs, gh = reg["goodness_separate"], reg["goodness_shared"]
        lines += ["", ("" if reg["shared_law_exists"] else "Fitted although the theory says none exists: ")
                  + f"Shared-exponent law: alpha = {reg['shared_alpha']:.3f}, beta = {reg['shared_beta']:.3f}. "
                  f"RMSE of the loss, separate laws vs shared law: {_num(gs, 5)} vs {_num(gh, 5)}."]
        lines += [f"- {n}" for n in reg["notes"]]
        lines.append("")
        lines += _side_by_side(reg)
    lines += ["## Reading", ""]
    for name, reg in result["regimes"].items():
        rows = reg["rows"]
        fit_b = [r["beta_fit"] for r in rows]
        part_b = [r["beta_part"] for r in rows if r["beta_part"] is not None]
        ratio = (reg["goodness_shared"] / reg["goodness_separate"]
                 if reg["goodness_shared"] and reg["goodness_separate"] else None)
        lines.append(
            f"- `{name}`: beta from the exact parts spans {min(part_b):.3f}-{max(part_b):.3f}, separate Chinchilla "
            f"fits {min(fit_b):.3f}-{max(fit_b):.3f}; the shared-exponent law's RMSE is {_num(ratio, 2)}x the "
            "separate laws'.")
    lines += ["- Theory (docs/proxy.md): undamped preconditioners change the D exponent (beta = 2r/(1-q)), so a "
              "shared beta cannot hold; damped ones act as GD with a step rescaled by ((1+eps)/eps)^q below the "
              "damping, so exponents are shared and only rho_D differs.",
              "- The Chinchilla form adds the two error terms, while in this model they overlap (modes beyond N "
              "are counted once, in the approximation part): near the N-D crossover the sum overstates the loss "
              "by up to 2x, which biases the fitted exponents; the 'from parts' columns have no such bias. A biased "
              "shared beta also biases rho_D = (B_ref/B_o)^(1/beta): with the true B ratio rho^beta_true, the fit "
              "reports rho^(beta_true/beta_fit).",
              "- diag equals sign here because the quadratic's curvature is diagonal in the parameter basis.",
              "", "Files: quadratic.json (fits, predictions, the exact loss split), runs/<regime>/*/run.json, "
              "quadratic_loss_vs_D.png.", ""]
    return "\n".join(lines)

