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
    if doc["warnings"]:
        out += ["## Warnings", ""] + [f"- {w}" for w in doc["warnings"]] + [""]
    s = doc.get("shared")
    if s:
        out += ["## Shared-exponent law", "",
                "L = E + A / (rho_N N)^alpha + B / (rho_D D)^beta, reference rho = 1.", ""]
        rows = [[k, s[k], _ci(s["ci"].get(k))] for k in ("E", "A", "B", "alpha", "beta", "allocation_exponent")]
        out += _table(["parameter", "value", "95% CI"], rows)
        if s["on_bound"]:
            out += [f"- on a bound: {'; '.join(s['on_bound'])}", ""]
        if not s["converged"]:
            out += [f"- did not converge: {s['message']}", ""]
        compute = doc["law"] == "compute"
        header = ["optimizer", "rho_N", "rho_N CI", "rho_D", "rho_D CI", "cells", "RMSE", "mean rel. error"]
        if compute:
            header += ["compute multiplier", "CI"]
        rows = []
        for opt, o in doc["optimizers"].items():
            row = [opt, o["rho_N"], _ci(o["rho_N_ci"]), o["rho_D"], _ci(o["rho_D_ci"]), o["n_cells"], o["rmse"],
                   o["mean_relative_error"]]
            if compute:
                row += [o["compute_multiplier"], _ci(o["compute_multiplier_ci"])]
            rows.append(row)
        out += _table(header, rows)
        if "rho.png" in names:
            out += ["![rho](rho.png)", ""]
    if doc["separate"]:
        out += ["## Separate Chinchilla laws", "", "L = E + A / N^alpha + B / D^beta per optimizer.", ""]
        rows = [[opt, v["E"], v["A"], v["B"], v["alpha"], _ci(v["ci"].get("alpha")), v["beta"],
                 _ci(v["ci"].get("beta")), v["n_points"], v["rmse"], "; ".join(v["on_bound"]) or "-"]
                for opt, v in doc["separate"].items()]
        out += _table(["optimizer", "E", "A", "B", "alpha", "alpha CI", "beta", "beta CI", "points", "RMSE",
                       "on bound"], rows)
        out += [f"- {opt} did not converge: {v['message']}" for opt, v in doc["separate"].items()
                if not v["converged"]]
        if any(not v["converged"] for v in doc["separate"].values()):
            out += [""]
    if doc["conditioning"]:
        out += ["## Conditioning", "",
                "Condition number of J^T J in Hoffmann's parameters (log E, log A, log B, alpha, beta), "
                "and the largest |correlation| between parameters. Large numbers mean the data do not pin "
                "the parameters down separately.", ""]
        out += _table(["fit", "parameters", "condition number", "max abs correlation"],
                      [[r["fit"], r["n_params"], r["condition_number"], r["max_abs_correlation"]]
                       for r in doc["conditioning"]])
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
        rows = []
        for opt, a in c["allocation"].items():
            for b in a["budgets"]:
                rows.append([opt, b["C"], b["N_opt"], _ci(b.get("N_opt_ci")), b["D_opt"], _ci(b.get("D_opt_ci")),
                             b["tokens_per_param"], b["loss_opt"], "; ".join(b["extrapolated"]) or "-"])
        out += _table(["optimizer", "C", "N*", "N* CI", "D*", "D* CI", "D*/N*", "L*", "extrapolation"], rows)
    for name, title in (("loss_vs_D.png", "Loss vs D"), ("loss_vs_N.png", "Loss vs N"),
                        ("residuals.png", "Residuals"), ("frontier.png", "Compute-optimal frontier")):
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
