"""The report's tuning-protocol parts: loss against each tuned value with its interpolated minimum,
and a markdown section with the hyperparameter laws, sensitivity, unresolved cells and the
scaling rules in force beside each optimizer's rho.

Reads fit.json's sections written by optlaw.fit.tuning_view (``tuning_protocol``,
``hyperparameter_laws``, ``tuning_sensitivity``, ``unresolved_cells``, ``scaling_rules``).
"""

from __future__ import annotations

import math
from pathlib import Path


def protocol_plots(doc: dict, out: Path) -> list[Path]:
    """One figure per optimizer: loss against each tuned key, a line per cell, a star at its interpolated minimum
    (unresolved cells dashed)."""
    import matplotlib.pyplot as plt  # only when plotting (report.plots set the Agg backend)

    by_opt: dict[str, list[dict]] = {}
    for cell in doc.get("tuning_protocol", {}).get("cells", []):
        if cell["role"] == "tuned" and cell["curves"]:
            by_opt.setdefault(str(cell["optimizer"]), []).append(cell)
    paths = []
    for opt, cells in sorted(by_opt.items()):
        keys = sorted({k for c in cells for k in c["curves"]})
        fig, axes = plt.subplots(1, len(keys), figsize=(5.0 * len(keys), 3.6), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for index, cell in enumerate(c for c in cells if key in c["curves"]):
                curve = cell["curves"][key]
                points = [(v, loss) for v, loss in zip(curve["values"], curve["losses"]) if loss is not None]
                colour = f"C{index % 10}"
                style = "-" if cell["resolved"] else "--"
                label = f"N={cell['N']:.3g} D={cell['D']:.3g}" + ("" if cell["resolved"] else " (unresolved)")
                ax.plot([v for v, _ in points], [loss for _, loss in points], style, marker="o", ms=3, color=colour,
                        label=label)
                minimum = curve["minimum"]
                if minimum is not None and math.isfinite(minimum["loss"]):
                    ax.plot([minimum["value"]], [minimum["loss"]], marker="*", ms=11, color=colour,
                            markeredgecolor="black", linestyle="none")
            ax.set_xscale("log", base=2)
            ax.set_xlabel(f"{key} (star: interpolated minimum)")
            ax.set_ylabel("final validation loss (seed mean)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        fig.suptitle(f"{opt}: loss against the tuned values per cell", fontsize=10)
        fig.tight_layout()
        path = out / f"tuning_protocol_{opt}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def protocol_section(doc: dict, plot_names: set[str], table, fmt) -> list[str]:
    """Markdown lines of the tuning-protocol section (none when the fit holds no tuning sweep); ``table`` and
    ``fmt`` are the report's table and number formatters."""
    protocol = doc.get("tuning_protocol") or {}
    if not protocol.get("cells") and not doc.get("scaling_rules"):
        return []
    out: list[str] = []
    if protocol.get("cells"):
        out += ["## Tuning protocol", "",
                f"Replayed from {', '.join(f'`{s}`' for s in protocol['sources'])}; "
                f"{'complete' if protocol['complete'] else 'NOT complete: some cells are still tuning'}.", ""]
        rows = []
        for cell in protocol["cells"]:
            minima = "; ".join(f"{k}={fmt(c['minimum']['value'])}" for k, c in cell["curves"].items() if c["minimum"])
            rows.append([cell["cell"], cell["role"], cell["status"], "yes" if cell["resolved"] else "no",
                         "yes" if cell["at_edge"] else "no", ", ".join(f"{k}={fmt(v)}" for k, v in cell["setting"].items()),
                         minima or "-", cell["winner_loss"]])
        out += table(["cell", "role", "status", "resolved", "at edge", "winner", "interpolated minimum", "loss"], rows)
        if doc.get("unresolved_cells"):
            out += [f"- **unresolved cells**: {', '.join(doc['unresolved_cells'])}", ""]
        out += [f"![tuning protocol]({n})" for n in sorted(plot_names) if n.startswith("tuning_protocol_")] + [""]
    laws = doc.get("hyperparameter_laws") or {}
    if laws:
        out += ["## Hyperparameter laws", "", "log h* = c + a log N + b log D (natural logs), fitted to each resolved "
                "cell's interpolated minimum; percentile bootstrap intervals over cells.", ""]
        rows = []
        for group, rows_of_group in sorted(laws.items()):
            for law in rows_of_group:
                ci = law["ci"]
                rows.append([group, law["key"]] + [_with_ci(law, t, ci, fmt) for t in ("c", "a", "b")]
                            + [law["n_cells"], law["residual_dof"], ", ".join(c["cell"] for c in law["cells"])])
        out += table(["optimizer", "key", "c", "a (N)", "b (D)", "cells", "residual dof", "cells used"], rows)
    sens = doc.get("tuning_sensitivity") or {}
    if sens:
        out += ["## Learning-rate sensitivity", "", "Width of the range of lr_mult whose loss is within 1% of the "
                "cell's best, in octaves (factors of 2), over resolved tuned cells: from the parabola in log lr "
                "through the best point and its neighbours (the one that gives the interpolated minimum). A "
                "censored cell's range reaches past the values tried, so its width there is extrapolated.", ""]
        out += table(["optimizer", "median width", "min", "max", "cells", "censored"],
                     [[o, s["median_width_log2"], s["min_width_log2"], s["max_width_log2"], s["n_cells"],
                       ", ".join(s["censored_cells"]) or "-"] for o, s in sens.items()])
    rules = doc.get("scaling_rules") or {}
    if rules:
        out += ["## Rules in force beside rho", "", "rho depends on how lr and weight decay move with width "
                "(optimizer.scaling of the runs fitted).", ""]
        rows = []
        for opt, variants in rules.items():
            rho = (doc.get("optimizers") or {}).get(opt) or {}
            for rule in variants:
                rows.append([opt, rho.get("rho_N"), rho.get("rho_D"), rule.get("lr_rule"), rule.get("wd_rule"),
                             rule.get("base_width"), ", ".join(rule.get("lr_groups") or []) or "-"])
            if len(variants) > 1:
                out += [f"- {opt}: its runs used {len(variants)} different scaling rules; its rho mixes them", ""]
        out += table(["optimizer", "rho_N", "rho_D", "lr rule", "wd rule", "base width", "lr groups"], rows)
    return out


def _with_ci(law: dict, term: str, ci: dict, fmt) -> str:
    if term not in law["terms"]:
        return "0 (not identified)"
    low, high = ci[term]
    return f"{fmt(law['coef'][term])} [{fmt(low)}, {fmt(high)}]"
