"""report.md: the tables of a fitting study, readable without the plots.

Rendered from the study's fit.json document alone, so a report can be redone from a saved fit.json.
"""

from __future__ import annotations

from pathlib import Path

from optlaw.report.tuning_plots import protocol_section


def _g(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _ci(ci) -> str:
    return f"[{_g(ci[0])}, {_g(ci[1])}]" if ci else "-"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_g(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines + [""]


def _verdict(entry: dict | None) -> str:
    v = (entry or {}).get("identifiability")
    return "-" if not v else v["verdict"]


def _reasons(entry: dict | None) -> str:
    v = (entry or {}).get("identifiability")
    return "; ".join(v["reasons"]) if v and v["reasons"] else "-"


def _conclusions(doc: dict) -> list[str]:
    c = doc.get("conclusions") or {}
    out = ["## Conclusions", ""]
    if c.get("supported"):
        out += ["What these data support (95% bootstrap intervals):", ""] + [f"- {x}" for x in c["supported"]] + [""]
    if c.get("not_supported"):
        out += ["What they do not support:", ""] + [f"- {x}" for x in c["not_supported"]] + [""]
    return out


def _identifiability(doc: dict) -> list[str]:
    rows = []
    if doc.get("shared"):
        rows.append([f"shared ({doc['variant']})", _verdict(doc["shared"]), _reasons(doc["shared"])])
        rows += [[f"shared: {opt}'s rho's", _verdict(o), _reasons(o)] for opt, o in doc["optimizers"].items()
                 if o.get("identifiability")]
    rows += [[f"separate: {opt}", _verdict(v), _reasons(v)] for opt, v in doc["separate"].items()]
    if not rows:
        return []
    t = doc.get("identifiability_thresholds") or {}
    return ["## Identifiability", "",
            "Whether each fit's data pin its parameters down. A fit marked `not identified` still has its "
            "numbers below, but they are not conclusions. Thresholds: near-minimal below parameters + "
            f"{t.get('near_minimal_margin_cells')} cells; an exponent interval wider than "
            f"{t.get('exponent_ci_width_over_value_weak')} x the estimate, a rho interval spanning more than a "
            f"factor {t.get('rho_ci_high_over_low_weak')}, or a coefficient at zero in more than "
            f"{t.get('coefficient_zero_share_weak', 0) * 100:.0f}% of bootstrap refits is `weak`.", ""] + \
        _table(["fit", "verdict", "reasons"], rows)


def _constancy(doc: dict, names: set[str]) -> list[str]:
    rc = doc.get("rho_constancy")
    if not rc:
        return []
    out = ["## Is rho constant across scale?", "",
           "Drift law rho_D,o(N) = rho_D,o (N / N_ref)^gamma_o (and the mirror rho_N,o(D)) against the constant "
           "law, both fitted by least squares on log loss; F test of all gamma = 0, each optimizer's own F test "
           "(its gamma = 0 with the others free), and bootstrap intervals for gamma. gamma < 0: the optimizer's "
           "token factor against the reference shrinks as models grow.", ""]
    for name, t in rc["tests"].items():
        if t["p_value"] is None:
            out.append(f"- {name}: {t['note']}")
        else:
            verdict = "rejected" if t["p_value"] < rc["level"] else "not rejected"
            out.append(f"- {name}: F = {_g(t['f_statistic'])}, df {t['df']}, p = {_g(t['p_value'], 3)}: constant rho "
                       f"{verdict} at the {rc['level']:g} level (N_ref or D_ref = {_g(t['reference_scale'])})")
    out.append("")
    rows = []
    for opt, o in rc["optimizers"].items():
        eff = ", ".join(f"{_g(e['N'], 3)}: {_g(e['rho_D'], 3)}{'*' if e['extrapolated'] else ''}"
                        for e in o.get("effective_rho_D_by_N", []))
        implied = ", ".join(_g(e["rho_D"], 3) for e in o.get("law_effective_rho_D_by_N", []))
        law = o.get("law_rho_D") or {}
        rows.append([opt, law.get("rho_D"), _ci(law.get("ci")), o.get("rho_D_drift_law_at_reference_scale"),
                     o.get("rho_D_exponent_N"), _ci(o.get("rho_D_exponent_N_ci")), o.get("rho_D_exponent_N_p_value"),
                     eff or "-", implied or "-"])
    out += _table(["optimizer", "law rho_D", "CI", "drift law rho_D(N_ref)", "gamma (rho_D ~ N^gamma)", "CI", "p",
                   "data-only rho_D by N", "same, from the law's losses"], rows)
    out += ["Data-only rho_D: the reference's losses at each N interpolated in (log D, log L) and inverted at the "
            "optimizer's losses (median over its cells; * = outside the reference's range, extrapolated). At fixed N "
            "it also carries rho_N, so the law's rho_D parameter matches it only when rho_N = 1; the last column "
            "puts the law's own predicted losses through the same inversion, which is the number to hold it against. "
            "The drift law is a separate least-squares fit (alpha, beta, E, A, B refitted): its rho_D at N_ref need "
            "not equal the law's constant rho_D, and on drifting data does not.", ""]
    if "effective_rho.png" in names:
        out += ["![effective rho](effective_rho.png)", ""]
    return out


def render(doc: dict, plots: list[Path]) -> str:
    names = {p.name for p in plots}
    out = ["# Scaling-law fit", ""]
    out += [f"- law: **{doc['law']}** (variant {doc['variant']}), objective: **{doc['objective']}**"
            + (f" (Huber delta {doc['huber_delta']} on log loss, summed)" if doc["objective"] == "huber_log"
               else " (squared error on raw loss)"),
            f"- N basis: **{doc['n_basis']}**, reference optimizer: **{doc['reference']}**",
            f"- {doc['n_points']} runs in {doc['n_cells']} cells from `{doc['source']}`; "
            f"bootstrap: {doc['bootstrap_replicates']} replicates by cell (within optimizer), "
            f"{int(doc['ci_level'] * 100)}% percentile intervals", ""]
    out += _conclusions(doc)
    out += _identifiability(doc)
    if doc["warnings"]:
        out += ["## Warnings", ""] + [f"- {w}" for w in doc["warnings"]] + [""]
    s = doc.get("shared")
    if s:
        out += ["## Shared-exponent law", "",
                "L = E + A / (rho_N N)^alpha + B / (rho_D D)^beta, reference rho = 1. "
                f"Identifiability: **{_verdict(s)}**.", ""]
        rows = [[k, s[k], _ci(s["ci"].get(k))] for k in ("E", "A", "B", "alpha", "beta", "allocation_exponent")]
        out += _table(["parameter", "value", "95% CI"], rows)
        if s["on_bound"]:
            out += [f"- on a bound: {'; '.join(s['on_bound'])}", ""]
        if not s["converged"]:
            out += [f"- did not converge: {s['message']}", ""]
        compute = doc["law"] == "compute"
        header = ["optimizer", "rho_N", "rho_N CI", "rho_D", "rho_D CI", "cells", "RMSE", "mean rel. error",
                  "identifiability"]
        if compute:
            header += ["compute multiplier", "CI"]
        rows = []
        for opt, o in doc["optimizers"].items():
            row = [opt, o["rho_N"], _ci(o["rho_N_ci"]), o["rho_D"], _ci(o["rho_D_ci"]), o["n_cells"], o["rmse"],
                   o["mean_relative_error"], _verdict(o) if opt != doc["reference"] else "reference"]
            if compute:
                row += [o["compute_multiplier"], _ci(o["compute_multiplier_ci"])]
            rows.append(row)
        out += _table(header, rows)
        if "rho.png" in names:
            out += ["![rho](rho.png)", ""]
    out += _constancy(doc, names)
    if doc["separate"]:
        out += ["## Separate Chinchilla laws", "", "L = E + A / N^alpha + B / D^beta per optimizer.", ""]
        rows = [[opt, v["E"], v["A"], v["B"], v["alpha"], _ci(v["ci"].get("alpha")), v["beta"],
                 _ci(v["ci"].get("beta")), v["n_points"], v["rmse"], "; ".join(v["on_bound"]) or "-", _verdict(v)]
                for opt, v in doc["separate"].items()]
        out += _table(["optimizer", "E", "A", "B", "alpha", "alpha CI", "beta", "beta CI", "points", "RMSE",
                       "on bound", "identifiability"], rows)
        out += [f"- {opt} did not converge: {v['message']}" for opt, v in doc["separate"].items()
                if not v["converged"]]
        if any(not v["converged"] for v in doc["separate"].values()):
            out += [""]
    if doc["conditioning"]:
        threshold = doc["conditioning"][0].get("threshold")
        out += ["## Conditioning", "",
                "Condition number of J^T J in Hoffmann's parameters (log E, log A, log B, alpha, beta) and the largest "
                f"|correlation| between parameters; above {_g(threshold)} a fit is called ill-conditioned, "
                "infinite is singular. The number grows with the parameter count and depends on the "
                "parameterisation, so it does not compare the shared law with separate laws: their exponents' "
                "interval widths (next table) do.", ""]
        out += _table(["fit", "parameters", "condition number", "verdict", "max abs correlation"],
                      [[r["fit"], r["n_params"], r["condition_number"], r.get("verdict", "-"), r["max_abs_correlation"]]
                       for r in doc["conditioning"]])
    if doc.get("interval_widths"):
        out += ["Width of the 95% intervals (what sharing the exponents buys):", ""]
        out += _table(["fit", "alpha", "beta", "allocation exponent"],
                      [[w["fit"], w["alpha"], w["beta"], w["allocation_exponent"]] for w in doc["interval_widths"]])
    if doc["holdout"]:
        laws = [k for k in doc["holdout"][0] if k not in ("optimizer", "N", "D", "actual")]
        out += [f"## Extrapolation check (held out: {doc['holdout_spec']})", ""]
        out += _table(["optimizer", "N", "D", "actual"] + laws,
                      [[c["optimizer"], c["N"], c["D"], c["actual"]] + [c[k] for k in laws] for c in doc["holdout"]])
        out += ["Held-out error per law (RMSE of log loss; nested variants compared here):", ""]
        out += _table(["law", "cells", "RMSE log loss", "mean rel. error"],
                      [[k, v["n_cells"], v["rmse_log"], v["mean_relative_error"]]
                       for k, v in doc["holdout_error"].items()])
    if doc.get("compute"):
        c = doc["compute"]
        out += [f"## Compute-optimal allocation (cost basis: {c['cost_basis']})", ""]
        if not c.get("cost_measured"):
            out += ["No measured step cost: every optimizer is charged the same per N·D, so compute multipliers "
                    "here count only loss-per-token gains.", ""]
        rows = []
        for opt, a in c["allocation"].items():
            for b in a["budgets"]:
                rows.append([opt, b["C"], b["N_opt"], _ci(b.get("N_opt_ci")), b["D_opt"], _ci(b.get("D_opt_ci")),
                             b["tokens_per_param"], b["loss_opt"], "; ".join(b["extrapolated"]) or "-"])
        out += _table(["optimizer", "C", "N*", "N* CI", "D*", "D* CI", "D*/N*", "L*", "extrapolation"], rows)
    for name, title in (("loss_vs_D.png", "Loss vs D"), ("loss_vs_N.png", "Loss vs N"),
                        ("isoflop.png", "IsoFLOP curves"), ("residuals.png", "Residuals"),
                        ("frontier.png", "Compute-optimal frontier")):
        if name in names:
            out += [f"## {title}", "", f"![{title}]({name})", ""]
    if doc["seed_noise"]:
        out += ["## Seed noise", ""]
        out += _table(["optimizer", "cells with seeds", "mean std", "max std"],
                      [[o, v["cells_with_seeds"], v["mean_std"], v["max_std"]] for o, v in doc["seed_noise"].items()])
    if doc["tuning"]:
        out += ["## Tuning: best run per cell", ""]
        out += _table(["optimizer", "N", "D", "winner", "loss", "at edge of sweep"],
                      [[c["optimizer"], c["N"], c["D"], str(c["winner"]), c["winner_loss"],
                        ", ".join(c["at_edge"]) or "-"] for c in doc["tuning"]])
        out += [f"![tuning]({n})" for n in sorted(names) if n.startswith("tuning_")] + [""]
    out += protocol_section(doc, names, _table, _g)  # tuning sweeps: curves, laws, sensitivity, rules
    if doc["excluded_runs"]:
        out += ["## Runs not fitted", ""]
        out += _table(["run", "optimizer", "N", "D", "status", "reason"],
                      [[r["run_id"], r["optimizer"], r["N"], r["D"], r["status"], r["reason"]]
                       for r in doc["excluded_runs"]])
    return "\n".join(out) + "\n"
