"""PNG plots of a fitting study (matplotlib, Agg backend: no display needed), fit for a paper.

The study is taken as given (duck typing): ``study.table`` (the run columns), ``study.shared``
and ``study.separate`` (fit results: ``predict``, ``compute_optimal``, ``frontier_band``,
``params``, ``ci``) and ``study.document`` (fit.json). Nothing here imports the fit stage.

Conventions: optimizers get the Okabe-Ito colours (safe for the common colour-vision
deficiencies; Okabe & Ito 2008) with a marker each, the reference black; model sizes get
evenly spaced colours of cividis (a sequential map made for colour-blind readers); log axes
carry plain labels (134M, 1B) instead of powers of ten; figures are saved with a tight
bounding box so no title is clipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optlaw.report.tuning_plots import protocol_plots  # noqa: E402

if TYPE_CHECKING:
    from optlaw.fit import Study

DPI = 150
# Okabe & Ito (2008) without black (black is the reference optimizer's); for more than 7 other
# optimizers Paul Tol's "muted" set (9 colours, also made for colour-vision deficiencies). Past 9
# no set of colours stays distinct for every reader, so each optimizer also gets its own marker.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
TOL_MUTED = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499")
# 13 markers against 9 colours: past 9 optimizers a colour comes back, never with the same marker
# (Marin's 10 other optimizers had cautious and sophia identical in both with 9 markers).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*", "8")
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 7, "axes.grid": True,
                     "grid.alpha": 0.3})


def si(x: float, _pos=None) -> str:
    """Tick label: 1.34e8 -> '134M'."""
    if x <= 0 or not math.isfinite(x):
        return ""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _log_axis(ax, which: str = "x", labels=si, decades: float | None = None, base: int = 10) -> None:
    """Log scale with readable labels: ticks at 1, 2, 3, 4, 5, 6, 8 within about a decade, 1, 2, 5 per decade
    on axes up to about two, one per decade on longer ones; with ``base=2``, every power of two (for
    values that are all powers of two, such as a tuning sweep's doubling lr multipliers)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if base == 2:
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=2, subs=(1.0,), numticks=14))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(labels))
        axis.set_minor_locator(matplotlib.ticker.NullLocator())
        return
    if decades is None:
        lo, hi = (ax.get_xlim() if which == "x" else ax.get_ylim())
        decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = _log_subs(decades, _axis_inches(ax, which))
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs, numticks=12))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(labels))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


# Tick sets per decade, densest first, each with the smallest gap between neighbours in decades (5 to 6,
# 2 to 3, 2 to 5 or 5 to 10). Under about a decade (a tuning sweep's lr multipliers, 0.5-4) 1-2-5 would
# leave 4 unlabelled; on a narrow panel 4-5-6 would print over each other (measured: "40k50k60k" on the
# effective-rho panels, 4.5 inches for 1.1 decades).
LOG_SUBS = (((1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0), math.log10(6 / 5)), ((1.0, 2.0, 3.0, 5.0), math.log10(3 / 2)),
            ((1.0, 2.0, 5.0), math.log10(2)))
MIN_TICK_GAP_INCHES = 0.36  # a label such as "50k" is ~0.25 inch at the default font size; 0.32 measured crowded


def _log_subs(decades: float, inches: float) -> tuple[float, ...]:
    """The densest tick set whose closest labels stay MIN_TICK_GAP_INCHES apart on an axis this long,
    at most about 1.3 decades for the densest and 2.2 for the others; one tick per decade beyond."""
    per_decade = inches / max(decades, 1e-9)
    for (subs, gap), max_decades in zip(LOG_SUBS, (1.3, 2.2, 2.2)):
        if decades <= max_decades and gap * per_decade >= MIN_TICK_GAP_INCHES:
            return subs
    return (1.0,)


def _axis_inches(ax, which: str) -> float:
    """The axis's length in inches from its place in the figure (before layout: close enough to choose ticks)."""
    box = ax.get_position()
    width, height = ax.figure.get_size_inches()
    return float(box.width * width if which == "x" else box.height * height)


def _plain(x: float, _pos=None) -> str:
    return f"{x:.3g}" if x > 0 else ""


def _style(optimizers: list[str], reference: str | None) -> dict[str, dict]:
    """A distinct (colour, marker) per optimizer; the reference black."""
    out, j = {}, 0
    others = [o for o in optimizers if o != reference]
    palette = OKABE_ITO if len(others) <= len(OKABE_ITO) else TOL_MUTED
    for opt in optimizers:
        if opt == reference:
            out[opt] = {"color": "black", "marker": "o", "ls": "-"}
        else:
            # a colour that comes back (past 9 optimizers) comes back dashed, so lines stay apart too
            out[opt] = {"color": palette[j % len(palette)], "marker": MARKERS[j % len(MARKERS)],
                        "ls": "-" if j < len(palette) else "--"}
            j += 1
    return out


def _size_colours(values) -> dict[float, tuple]:
    values = sorted(set(float(v) for v in values))
    cmap = plt.get_cmap("cividis")
    return {v: cmap(0.9 * i / max(len(values) - 1, 1)) for i, v in enumerate(values)}


def _grid(n: int, width: float = 3.4, height: float = 2.9, sharey: bool = True):
    if n == 1:  # one panel: a full-size figure, not a thumbnail
        width, height = 6.0, 4.2
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.5), squeeze=False, sharey=sharey,
                             layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _legend_columns(n_entries: int, n_panels: int) -> int:
    """As many legend columns as the figure's width holds (about 2 per panel column)."""
    return max(1, min(n_entries, 4 if n_panels == 1 else 2 * min(4, n_panels)))


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _optimizers(study: Study) -> list[str]:
    if study.shared is not None:
        return list(study.shared.optimizers)
    return list(study.separate.optimizers)


def _gap_forest(ax, s, style: dict, budgets: np.ndarray) -> None:
    """L*_o(C) - L*_ref(C) with 95% bootstrap intervals at the ends of the runs' compute range, one row per
    optimizer (sorted): many overlapping bands over C are unreadable, two budgets per row are not."""
    opts = [o for o in s.optimizers if o != s.reference]
    gaps = {o: s.compute_optimal(budgets, o)[2] - s.compute_optimal(budgets, s.reference)[2] for o in opts}
    opts.sort(key=lambda o: gaps[o][-1])
    for i, opt in enumerate(opts):
        band = s.frontier_band(budgets, opt, relative_to=s.reference)
        for j, (C, shift, fill) in enumerate(zip(budgets, (-0.17, 0.17), ("white", style[opt]["color"]))):
            if band is not None and np.isfinite(band[0][j]) and np.isfinite(band[1][j]):
                ax.plot([band[0][j], band[1][j]], [i + shift] * 2, color=style[opt]["color"], lw=1.6)
            ax.plot(gaps[opt][j], i + shift, marker=style[opt]["marker"], ms=6, color=style[opt]["color"],
                    mfc=fill, mec=style[opt]["color"] if fill == "white" else "black", mew=0.8, ls="")
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(opts)), opts)
    ax.set_ylim(-0.7, len(opts) - 0.3)
    ax.grid(axis="y", alpha=0)
    ax.set_xlabel(f"L*_o(C) - L*_{s.reference}(C); < 0: better than {s.reference}")
    ax.set_title(f"against {s.reference} at C = {budgets[0]:.1e} (open) and {budgets[-1]:.1e} (filled), 95% CI",
                 fontsize=9)


def _compute_label(study: Study) -> str:
    """What the compute axis counts: measured step cost only when fit.json says it was measured."""
    compute = study.document.get("compute") or {}
    if compute.get("cost_measured"):
        return "compute C (FLOPs x measured step cost)"
    return "compute C = 6ND (equal step cost assumed)"


def _reference(study: Study) -> str | None:
    return study.shared.reference if study.shared is not None else None


# ----------------------------------------------------------------------------- loss against D and N

def loss_vs_D(study: Study, out: Path) -> Path:
    """One panel per optimizer: loss against D, one colour per N; shared law solid, separate dashed."""
    t = study.table
    opts = _optimizers(study)
    fig, axes = _grid(len(opts))
    colour = _size_colours(t.N)
    for ax, opt in zip(axes, opts):
        m = t.optimizer == opt
        for n in np.unique(t.N[m]):
            k = m & (t.N == n)
            ax.scatter(t.D[k], t.loss[k], s=16, color=colour[n], label=f"N={si(n)}", zorder=3, edgecolor="white",
                       linewidth=0.4)
            grid = np.geomspace(t.D[k].min() / 1.5, t.D[k].max() * 1.5, 60)
            if study.shared is not None and opt in study.shared.laws:
                ax.plot(grid, study.shared.predict(n, grid, opt), color=colour[n], lw=1.3)
            if study.separate is not None and opt in study.separate.laws:
                ax.plot(grid, study.separate.predict(n, grid, opt), color=colour[n], lw=1.0, ls="--")
        _log_axis(ax)
        ax.set_title(opt)
        ax.set_xlabel("D (tokens)")
    axes[0].set_ylabel("loss")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=f"N={si(n)}") for n, c in colour.items()]
    if study.shared is not None:
        handles.append(plt.Line2D([], [], color="grey", lw=1.3, label="shared law"))
    if study.separate is not None:
        handles.append(plt.Line2D([], [], color="grey", lw=1.0, ls="--", label="separate law"))
    fig.legend(handles=handles, loc="outside lower center", ncol=_legend_columns(len(handles), len(opts)))
    fig.suptitle("Loss against tokens D at each model size N: data and the fitted laws")
    return _save(fig, out / "loss_vs_D.png")


def loss_vs_N(study: Study, out: Path) -> Path:
    """One panel per optimizer: loss against N along lines of fixed tokens per parameter, or of fixed D when
    the design shares D values across sizes rather than ratios (a fixed grid of D with irregular N gave a
    dozen ratio groups of one or two points each), with the shared law."""
    t = study.table
    opts = _optimizers(study)
    fig, axes = _grid(len(opts))
    ratio = np.round(np.log2(t.D / t.N) * 4) / 4  # group cells whose D/N agree to ~20%
    tokens = np.round(np.log2(t.D) * 4) / 4
    by_ratio = len(np.unique(ratio)) <= len(np.unique(tokens))
    key = ratio if by_ratio else tokens
    groups = np.unique(key)
    cmap = plt.get_cmap("cividis")
    colour = {g: cmap(0.9 * j / max(len(groups) - 1, 1)) for j, g in enumerate(groups)}
    value = {g: float(np.median((t.D / t.N if by_ratio else t.D)[key == g])) for g in groups}
    for ax, opt in zip(axes, opts):
        m = t.optimizer == opt
        for g in groups:
            k = m & (key == g)
            if not k.any():
                continue
            ax.scatter(t.N[k], t.loss[k], s=16, color=colour[g], zorder=3, edgecolor="white", linewidth=0.4)
            grid = np.geomspace(t.N[k].min() / 1.5, t.N[k].max() * 1.5, 60)
            if study.shared is not None and opt in study.shared.laws:
                D = value[g] * grid if by_ratio else np.full_like(grid, value[g])
                ax.plot(grid, study.shared.predict(grid, D, opt), color=colour[g], lw=1.2)
        _log_axis(ax)
        ax.set_title(opt)
        ax.set_xlabel("N (parameters)")
    axes[0].set_ylabel("loss")
    handles = [plt.Line2D([], [], color=colour[g], marker="o", lw=1.2,
                          label=f"D/N={value[g]:.3g}" if by_ratio else f"D={si(value[g])}") for g in groups]
    fig.legend(handles=handles, loc="outside lower center", ncol=_legend_columns(len(handles), len(opts)))
    fixed = "tokens per parameter D/N" if by_ratio else "tokens D"
    fig.suptitle(f"Loss against model size N at fixed {fixed} (lines: shared law)")
    return _save(fig, out / "loss_vs_N.png")


# ----------------------------------------------------------------------------- rho's

def rhos(study: Study, out: Path) -> Path | None:
    """rho_N and rho_D per optimizer with 95% bootstrap intervals, on a log axis (reference = 1)."""
    if study.shared is None:
        return None
    s = study.shared
    opts = [o for o in s.optimizers if o != s.reference]
    if not opts:
        return None
    style = _style(list(s.optimizers), s.reference)
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 0.55 * len(opts) + 2.5) * 1.6, 3.6), layout="constrained")
    x = np.arange(len(opts))
    for ax, name in zip(axes, ("rho_N", "rho_D")):
        vals = np.array([s.params[name, o] for o in opts], dtype=float)
        ci = np.array([s.ci.get((name, o), (np.nan, np.nan)) for o in opts], dtype=float)
        finite = np.concatenate([vals, ci.ravel()])
        finite = finite[np.isfinite(finite) & (finite > 0)]
        lo_lim = min(finite.min(), 1.0) / 1.3 if finite.size else 0.5
        hi_lim = max(finite.max(), 1.0) * 1.3 if finite.size else 2.0
        for j, o in enumerate(opts):
            v, (lo, hi) = vals[j], ci[j]
            st = style[o]
            if np.isfinite(lo) and np.isfinite(hi):
                lo_c, hi_c = max(lo, lo_lim), min(hi, hi_lim)
                ax.plot([j, j], [lo_c, hi_c], color=st["color"], lw=2)
                if hi > hi_lim:   # unbounded above: an arrow at the top
                    ax.plot(j, hi_lim, marker="^", color=st["color"], ms=7)
                if lo < lo_lim:
                    ax.plot(j, lo_lim, marker="v", color=st["color"], ms=7)
            elif np.isfinite(lo):
                ax.plot([j, j], [max(lo, lo_lim), hi_lim], color=st["color"], lw=2)
                ax.plot(j, hi_lim, marker="^", color=st["color"], ms=7)
            if np.isfinite(v) and v > 0:
                ax.plot(j, v, marker=st["marker"], color=st["color"], ms=7, markeredgecolor="black", mew=0.5)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(lo_lim, hi_lim)
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        labels = []
        for o in opts:
            v = s.verdict(o) if hasattr(s, "verdict") else None
            labels.append(o if v is None or v.verdict == "identified" else f"{o} ({v.verdict})")
        ax.set_xticks(x, labels, rotation=40, ha="right")
        word = "parameters" if name == "rho_N" else "tokens"
        ax.set_title(f"{name}: {word} factor against {s.reference} (= 1), 95% CI")
        ax.set_ylabel(f"{name} (log scale)")
    return _save(fig, out / "rho.png")


def effective_rho(study: Study, out: Path) -> Path | None:
    """Per optimizer: the data-only rho_D at each N, against what each law says that same number is.

    The data-only number (the reference's L(D) at that N inverted at the optimizer's losses) is
    not the law's rho_D parameter: at fixed N it also carries rho_N. So the lines are the same
    inversion applied to each law's predicted losses at the same cells: the headline constant-rho
    law (solid) and the drift law (dashed). The constant law's rho_D parameter and its 95% interval
    are the band; each panel's note gives both laws' parameters (the drift law is its own
    least-squares fit, so its rho_D at N_ref need not equal the headline's constant)."""
    rc = study.document.get("rho_constancy")
    if not rc or study.shared is None:
        return None
    s = study.shared
    opts = [o for o, e in rc["optimizers"].items() if e.get("effective_rho_D_by_N")]
    if not opts:
        return None
    style = _style(list(s.optimizers), s.reference)
    fig, axes = _grid(len(opts), width=3.3, height=2.9)
    test = rc["tests"].get("rho_D(N)") or {}
    n_ref = test.get("reference_scale")
    N_all = np.array([e["N"] for o in opts for e in rc["optimizers"][o]["effective_rho_D_by_N"]])
    span = (N_all.min() / 1.3, N_all.max() * 1.3)
    for ax, opt in zip(axes, opts):
        e = rc["optimizers"][opt]
        st = style[opt]
        law = e.get("law_rho_D") or {}
        if law.get("ci") and all(v is not None for v in law["ci"]):
            ax.axhspan(law["ci"][0], law["ci"][1], color=st["color"], alpha=0.15, lw=0,
                       label="constant law's rho_D parameter, 95% CI")
        if law.get("rho_D") is not None:
            ax.axhline(law["rho_D"], color=st["color"], lw=0.8, ls=":")
        for key, kw, label in (
                ("law_effective_rho_D_by_N", {"color": st["color"], "lw": 1.6, "ls": "-"},
                 "constant-rho law (headline fit), same inversion"),
                ("drift_law_effective_rho_D_by_N", {"color": "black", "lw": 1.1, "ls": "--"},
                 "drift law (own least-squares fit), same inversion")):
            line = e.get(key) or []
            if line:
                ax.plot([p["N"] for p in line], [p["rho_D"] for p in line], label=label, zorder=2, **kw)
        pts = e["effective_rho_D_by_N"]
        ax.plot([p["N"] for p in pts], [p["rho_D"] for p in pts], color=st["color"], marker=st["marker"], ms=6,
                ls="", markeredgecolor="black", mew=0.5, zorder=3, label="data only (reference's L(D) inverted)")
        for p in pts:
            if p["extrapolated"]:
                ax.plot(p["N"], p["rho_D"], marker="o", ms=11, mfc="none", color="grey")
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_xlim(*span)
        _log_axis(ax)
        _log_axis(ax, "y", labels=_plain)
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 7.0)))
        note = _parameters_note(e, study.document.get("optimizers", {}).get(opt, {}))
        if note:
            ax.text(0.02, 0.03, note, transform=ax.transAxes, fontsize=6.3, va="bottom", ha="left",
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1.5}, zorder=5)
        p_o = e.get("rho_D_exponent_N_p_value")
        ax.set_title(f"{opt}" + (f" (drift p = {p_o:.2g})" if p_o is not None else ""))
        ax.set_xlabel("N (parameters)")
    for row_start in range(0, len(opts), 4):
        axes[row_start].set_ylabel(f"rho_D against {s.reference}")
    _expand_to_notes(axes[:len(opts)])
    handles, labels = axes[0].get_legend_handles_labels()
    if any(p["extrapolated"] for o in opts for p in rc["optimizers"][o]["effective_rho_D_by_N"]):
        handles.append(plt.Line2D([], [], marker="o", ms=11, mfc="none", color="grey", ls=""))
        labels.append("outside the reference's D range (extrapolated)")
    legend = fig.legend(handles, labels, loc="outside lower center", ncol=2)
    p = rc.get("p_value")
    fig.suptitle("Is rho_D constant across N? The data-only token factor per size against what each law says it is"
                 + (f" (F test of constancy: p = {p:.2g})" if p is not None else ""))
    ref = f"N_ref = {si(n_ref)}" if n_ref else "N_ref"
    _caption(fig, legend, "Lines: each law's predicted losses put through the same inversion as the data (at fixed N "
             "the data-only factor also carries rho_N, so it equals the law's rho_D parameter only when rho_N = 1).\n"
             f"The drift law rho_D(N) = rho_D,o (N/N_ref)^gamma_o ({ref}) refits alpha, beta, E, A and B by least "
             "squares on log loss; its rho_D at N_ref need not equal the headline (Huber) fit's constant.")
    return _save(fig, out / "effective_rho.png")


def _caption(fig, legend, text: str) -> None:
    """A caption with the figure's bottom legend, as its title: the layout then keeps both clear of the panels
    and of each other (a free fig.text is moved over by constrained layout at save time)."""
    legend.set_title(text, prop={"size": 7})
    legend.get_frame().set_linewidth(0)


def _parameters_note(entry: dict, optimizer: dict) -> str:
    """Both laws' parameters for one optimizer, for a panel's corner."""
    lines = []
    law = entry.get("law_rho_D") or {}
    if law.get("rho_D") is not None:
        ci = law.get("ci")
        ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and all(v is not None for v in ci) else ""
        rho_N = optimizer.get("rho_N")
        lines.append(f"constant: rho_D {law['rho_D']:.2f}{ci_text}" + (f", rho_N {rho_N:.2f}" if rho_N else ""))
    g, at_ref = entry.get("rho_D_exponent_N"), entry.get("rho_D_drift_law_at_reference_scale")
    if g is not None and at_ref is not None:
        gci = entry.get("rho_D_exponent_N_ci")
        gci_text = f" [{gci[0]:.2f}, {gci[1]:.2f}]" if gci and all(v is not None for v in gci) else ""
        lines.append(f"drift: rho_D(N_ref) {at_ref:.2f}, gamma {g:.2f}{gci_text}")
    return "\n".join(lines)


def _expand_to_notes(axes) -> None:
    """Leave room under the data for the parameter note: widen each (shared) y range downwards by a third."""
    lo, hi = axes[0].get_ylim()
    axes[0].set_ylim(lo / (hi / lo) ** 0.3, hi)


# ----------------------------------------------------------------------------- compute

def _budgets(study: Study, n: int = 4) -> np.ndarray:
    s, t = study.shared, study.table
    cost = np.concatenate([s.compute_cost(t.N[t.optimizer == o], t.D[t.optimizer == o], o) for o in s.optimizers])
    return np.geomspace(cost.min(), cost.max(), n) if cost.min() < cost.max() else np.array([cost.min()])


def isoflop(study: Study, out: Path) -> Path | None:
    """Per optimizer: loss against N at a few fixed compute budgets (the law's curves), each curve's
    minimum (N*), and the runs whose compute lies within 25% of a budget."""
    if study.shared is None:
        return None
    s, t = study.shared, study.table
    opts = list(s.optimizers)
    budgets = _budgets(study)
    cmap = plt.get_cmap("cividis")
    colour = {C: cmap(0.9 * i / max(len(budgets) - 1, 1)) for i, C in enumerate(budgets)}
    fig, axes = _grid(len(opts), width=3.2, height=2.8)
    for ax, opt in zip(axes, opts):
        m = t.optimizer == opt
        k = s.cost_of(opt)
        N_data = t.N[m]
        N_stars = np.array([s.compute_optimal(C, opt)[0] for C in budgets], dtype=float)
        # a degenerate law (A or B at zero) has no finite minimum: draw its curves on the data's range
        shown = N_stars[np.isfinite(N_stars) & (N_stars > 0)]
        N_lo = min(N_data.min() / 4, shown.min() / 2) if shown.size else N_data.min() / 4
        N_hi = max(N_data.max() * 4, shown.max() * 2) if shown.size else N_data.max() * 4
        for C in budgets:
            N = np.geomspace(N_lo, N_hi, 160)
            L = s.predict(N, C / (k * N), opt)
            ax.plot(N, L, color=colour[C], lw=1.2)
            N_opt, _, L_opt = s.compute_optimal(C, opt)
            if np.isfinite(N_opt) and N_opt > 0 and np.isfinite(L_opt):
                ax.plot(N_opt, L_opt, marker="*", ms=10, color=colour[C], markeredgecolor="black", mew=0.5, zorder=4)
            near = m & (np.abs(np.log(s.compute_cost(t.N, t.D, opt) / C)) < np.log(1.25))
            ax.scatter(t.N[near], t.loss[near], s=18, color=colour[C], edgecolor="black", linewidth=0.4, zorder=3)
        ax.axvspan(N_data.min(), N_data.max(), color="grey", alpha=0.1, lw=0, zorder=0)
        _log_axis(ax)
        ax.set_title(opt)
        ax.set_xlabel("N (parameters)")
        minima = [float(s.compute_optimal(C, opt)[2]) for C in budgets]
        lo = min([t.loss[m].min()] + [v for v in minima if np.isfinite(v) and v > 0])
        ax.set_ylim(lo * 0.97, t.loss[m].max() * 1.08)
    axes[0].set_ylabel("loss")
    handles = [plt.Line2D([], [], color=c, lw=1.2, label=f"C = {C:.2g}") for C, c in colour.items()]
    handles += [plt.Line2D([], [], color="grey", marker="*", ls="", ms=9, label="law's minimum N*(C)"),
                plt.Line2D([], [], color="grey", marker="o", ls="", label="runs within 25% of C"),
                matplotlib.patches.Patch(color="grey", alpha=0.2, label="N range of the runs")]
    fig.legend(handles=handles, loc="outside lower center", ncol=_legend_columns(len(handles), len(opts)))
    fig.suptitle(f"IsoFLOP curves: loss against N at fixed {_compute_label(study)}, shared law")
    return _save(fig, out / "isoflop.png")


def frontier(study: Study, out: Path) -> Path | None:
    """Compute-optimal loss L*(C) per optimizer with the runs (cost, loss); the same against the reference
    (L*_o - L*_ref, with 95% bootstrap bands: the lines of many optimizers lie within a few hundredths
    of each other, so only the difference shows who is ahead and how surely); and N*(C)."""
    if study.shared is None:
        return None
    s, t = study.shared, study.table
    style = _style(list(s.optimizers), s.reference)
    if not any(np.isfinite(s.compute_optimal(1.0, o)[0]) and s.compute_optimal(1.0, o)[0] > 0
               for o in s.optimizers):
        return None   # no optimizer's law has a finite compute optimum (A or B at zero): nothing to draw
    cost = np.concatenate([s.compute_cost(t.N[t.optimizer == o], t.D[t.optimizer == o], o) for o in s.optimizers])
    C = np.geomspace(cost.min() / 3, cost.max() * 3, 80)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
    few = len(s.optimizers) <= 4   # bands on the L* panel only while they stay apart
    _, _, L_ref = s.compute_optimal(C, s.reference)
    for opt in s.optimizers:
        st = style[opt]
        N_opt, _, L_opt = s.compute_optimal(C, opt)
        axes[0].plot(C, L_opt, color=st["color"], ls=st["ls"], label=opt, lw=1.3)
        band = s.frontier_band(C, opt) if few else None
        if band is not None:
            axes[0].fill_between(C, band[0], band[1], color=st["color"], alpha=0.15, lw=0)
        m = t.optimizer == opt
        axes[0].scatter(s.compute_cost(t.N[m], t.D[m], opt), t.loss[m], s=12, color=st["color"], marker=st["marker"],
                        alpha=0.8, edgecolor="none")
        if few:
            axes[1].plot(C, L_opt - L_ref, color=st["color"], ls=st["ls"], lw=1.3, label=opt)
            diff = s.frontier_band(C, opt, relative_to=s.reference) if opt != s.reference else None
            if diff is not None:
                axes[1].fill_between(C, diff[0], diff[1], color=st["color"], alpha=0.15, lw=0)
        axes[2].plot(C, N_opt, color=st["color"], ls=st["ls"], label=opt, lw=1.3)
    if not few:
        _gap_forest(axes[1], s, style, np.array([cost.min(), cost.max()]))
    for ax in (axes if few else axes[[0, 2]]):
        _log_axis(ax, labels=lambda x, _p=None: f"{x:.0e}".replace("e+", "e") if x > 0 else "")
        ax.axvspan(cost.min(), cost.max(), color="grey", alpha=0.08, lw=0)
        ax.set_xlabel(_compute_label(study))
    _log_axis(axes[2], "y")
    minima = np.concatenate([np.atleast_1d(s.compute_optimal(C, o)[2]) for o in s.optimizers])
    minima = minima[np.isfinite(minima) & (minima > 0)]
    lo = min(t.loss.min(), minima.min()) if minima.size else t.loss.min()
    axes[0].set_ylim(lo * 0.97, max(np.percentile(t.loss, 95), t.loss.min() * 1.01) * 1.05)
    axes[0].set_ylabel("loss; lines: compute-optimal L*(C)")
    axes[0].set_title("L*(C) and the runs" + (" (band: 95% bootstrap)" if few else ""))
    if few:
        axes[1].set_ylabel(f"L*(C) - L*_{s.reference}(C)")
        axes[1].set_title(f"against {s.reference}: below 0 is better (band: 95% bootstrap)")
    axes[2].set_ylabel("compute-optimal N*(C)")
    axes[2].set_title("compute-optimal model size")
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 11))
    fig.suptitle("Compute-optimal frontier per optimizer (shared law); shaded: compute range of the runs")
    return _save(fig, out / "frontier.png")


# ----------------------------------------------------------------------------- residuals and tuning

def residuals(study: Study, out: Path) -> Path:
    """Relative residual (loss - fit) / loss against N, per optimizer, for shared and separate laws."""
    t = study.table
    fits = [(name, f) for name, f in (("shared", study.shared), ("separate", study.separate)) if f is not None]
    fig, axes = plt.subplots(1, len(fits), figsize=(6 * len(fits), 3.8), squeeze=False, sharey=True,
                             layout="constrained")
    opts = sorted(set(t.optimizer.tolist()))
    style = _style(opts, _reference(study))
    for ax, (name, fit) in zip(axes[0], fits):
        for j, opt in enumerate(opts):
            if opt not in fit.laws:
                continue
            m = t.optimizer == opt
            rel = (t.loss[m] - fit.predict(t.N[m], t.D[m], opt)) / t.loss[m]
            jitter = np.exp(0.03 * (j - len(opts) / 2))  # separate overlapping optimizers a little
            ax.scatter(t.N[m] * jitter, rel * 100, s=12, color=style[opt]["color"], marker=style[opt]["marker"],
                       label=opt)
        ax.axhline(0, color="grey", lw=0.8)
        _log_axis(ax)
        ax.set_xlabel("N (parameters)")
        ax.set_title(f"{name} law residuals")
    axes[0][0].set_ylabel("(loss - fit) / loss  [%]")
    handles, labels = axes[0][-1].get_legend_handles_labels()   # below the panels: a legend inside hid points
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 11))
    return _save(fig, out / "residuals.png")


def tuning(study: Study, out: Path) -> list[Path]:
    """Per optimizer and swept hyperparameter: each cell's loss above its best against the value
    (one line per cell, coloured by N; the minimum at 0 shows where the winner sits in the sweep)."""
    paths = []
    by_opt: dict[str, list[dict]] = {}
    for cell in study.table.tuning:
        by_opt.setdefault(cell["optimizer"], []).append(cell)
    for opt, cells in sorted(by_opt.items()):
        names = _independent_keys(cells, sorted({n for c in cells for n in c["swept"]}))
        if not names:
            continue
        fig, axes = plt.subplots(1, len(names), figsize=(6.0 * len(names), 4.2), squeeze=False, layout="constrained")
        colour = _size_colours([c["N"] for c in cells])
        for ax, name in zip(axes[0], names):
            swept = []
            for cell in cells:
                pts = [(p["hyperparameters"], p["loss"]) for p in cell["points"]]
                xs = sorted((_lookup(hp, name), loss) for hp, loss in pts if _lookup(hp, name) is not None)
                if not xs:
                    continue
                swept += [a for a, _ in xs]
                best = min(b for _, b in xs)
                ax.plot([a for a, _ in xs], [b - best for _, b in xs], marker="o", ms=3, lw=0.8, alpha=0.8,
                        color=colour[float(cell["N"])])
            # a doubling sweep (2-64) under 1-2-5 ticks labelled 2, 5, 10, 20, 50: none of its values
            _log_axis(ax, labels=_plain, base=2 if _powers_of_two(swept) else 10)
            ax.set_xlabel(name)
            ax.set_ylabel("final loss above the cell's best")
        handles = [plt.Line2D([], [], color=c, marker="o", label=f"N={si(n)}") for n, c in colour.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6))
        fig.suptitle(f"{opt}: each cell's loss against the swept hyperparameter ({len(cells)} cells)")
        paths.append(_save(fig, out / f"tuning_{opt}.png"))
    return paths


def _powers_of_two(values: list[float]) -> bool:
    """Whether every value is a power of two (as a doubling tuning walk visits) and there are more
    than two distinct ones."""
    exps = [math.log2(v) for v in values if v > 0]
    return (len(exps) == len(values) and len(set(values)) > 2
            and all(abs(e - round(e)) < 1e-9 for e in exps))


def _independent_keys(cells: list[dict], names: list[str]) -> list[str]:
    """``names`` less those that move in lockstep with an earlier one (within every cell a fixed ratio at
    every point: the per-group lrs a swept lr_mult scales), which would draw the same curve again."""

    def lockstep_in(cell: dict, a: str, b: str) -> bool:
        pairs = [(_lookup(p["hyperparameters"], a), _lookup(p["hyperparameters"], b)) for p in cell["points"]]
        pairs = [(x, y) for x, y in pairs if x is not None or y is not None]
        if any(x is None or y is None for x, y in pairs):
            return False
        ratios = [y / x for x, y in pairs]
        return not ratios or max(ratios) <= min(ratios) * (1 + 1e-9)

    def lockstep(a: str, b: str) -> bool:
        return all(lockstep_in(cell, a, b) for cell in cells)

    # lr_mult (the knob a sweep turns) first, so the derived keys are the ones dropped
    ordered = sorted(names, key=lambda n: (not n.endswith("lr_mult"), n))
    kept: list[str] = []
    for name in ordered:
        if not any(lockstep(k, name) for k in kept):
            kept.append(name)
    return kept


def _lookup(hp: dict, dotted: str):
    node = hp
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) and node > 0 else None


def all_plots(study: Study, out: Path) -> list[Path]:
    paths = [loss_vs_D(study, out), loss_vs_N(study, out), rhos(study, out), effective_rho(study, out),
             isoflop(study, out), residuals(study, out), frontier(study, out)] + tuning(study, out)
    paths += protocol_plots(study.document, out)  # tuning sweeps: loss against lr per cell with its minimum
    return [p for p in paths if p is not None]
