"""PNG plots of a fitting study (matplotlib, Agg backend: no display needed).

The study is taken as given (duck typing): ``study.table`` (the run columns), ``study.shared``
and ``study.separate`` (fit results: ``predict``, ``compute_optimal``, ``params``, ``ci``).
Nothing here imports the fit stage; whatever a plot needs computed is a method of the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optlaw.report.tuning_plots import protocol_plots  # noqa: E402

if TYPE_CHECKING:
    from optlaw.fit import Study

DPI = 110


def _grid(n: int):
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _save(fig, path: Path) -> Path:
    for ax in fig.axes:
        # Minor log-tick labels overlap on panels spanning less than a decade.
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _save_loss_panels(fig, axes, opts: list[str], xlabel: str, title: str, path: Path) -> Path:
    """Shared finish of the per-optimizer loss panels: log x axis, titles, labels, legend."""
    for ax, opt in zip(axes, opts):
        ax.set_xscale("log")
        ax.set_title(opt, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=6, loc="upper right")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _optimizers(study: Study) -> list[str]:
    if study.shared is not None:
        return list(study.shared.optimizers)
    return list(study.separate.optimizers)


def loss_vs_D(study: Study, out: Path) -> Path:
    """One panel per optimizer: loss against D, one colour per N, shared law solid, separate dashed."""
    t = study.table
    opts = _optimizers(study)
    fig, axes = _grid(len(opts))
    sizes = np.unique(t.N)
    cmap = plt.get_cmap("viridis")
    colour = {n: cmap(i / max(len(sizes) - 1, 1)) for i, n in enumerate(sizes)}
    for ax, opt in zip(axes, opts):
        m = t.optimizer == opt
        for n in np.unique(t.N[m]):
            k = m & (t.N == n)
            ax.scatter(t.D[k], t.loss[k], s=14, color=colour[n], label=f"N={n:.3g}", zorder=3)
            grid = np.geomspace(t.D[k].min() / 1.5, t.D[k].max() * 1.5, 60)
            if study.shared is not None and opt in study.shared.laws:
                ax.plot(grid, study.shared.predict(n, grid, opt), color=colour[n], lw=1.2)
            if study.separate is not None and opt in study.separate.laws:
                ax.plot(grid, study.separate.predict(n, grid, opt), color=colour[n], lw=1.0, ls="--")
    return _save_loss_panels(fig, axes, opts, "D (tokens)",
                             "Loss vs D per N (solid: shared law, dashed: separate law)", out / "loss_vs_D.png")


def loss_vs_N(study: Study, out: Path) -> Path:
    """One panel per optimizer: loss against N at each tokens-per-parameter ratio, with fitted curves."""
    t = study.table
    opts = _optimizers(study)
    fig, axes = _grid(len(opts))
    ratio = np.round(np.log2(t.D / t.N) * 4) / 4  # group cells whose D/N agree to ~20%
    groups = np.unique(ratio)
    cmap = plt.get_cmap("plasma")
    for ax, opt in zip(axes, opts):
        m = t.optimizer == opt
        for j, g in enumerate(groups):
            k = m & (ratio == g)
            if not k.any():
                continue
            c = cmap(j / max(len(groups) - 1, 1))
            tpp = float(np.median(t.D[k] / t.N[k]))
            ax.scatter(t.N[k], t.loss[k], s=14, color=c, label=f"D/N={tpp:.3g}", zorder=3)
            grid = np.geomspace(t.N[k].min() / 1.5, t.N[k].max() * 1.5, 60)
            if study.shared is not None and opt in study.shared.laws:
                ax.plot(grid, study.shared.predict(grid, tpp * grid, opt), color=c, lw=1.2)
    return _save_loss_panels(fig, axes, opts, "N (parameters)",
                             "Loss vs N at fixed tokens per parameter (lines: shared law)", out / "loss_vs_N.png")


def rhos(study: Study, out: Path) -> Path | None:
    """rho_N and rho_D per optimizer with bootstrap intervals (reference = 1)."""
    if study.shared is None:
        return None
    s = study.shared
    opts = list(s.optimizers)
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 0.7 * len(opts) + 3) * 1.4, 3.4))
    x = np.arange(len(opts))
    for ax, name in zip(axes, ("rho_N", "rho_D")):
        vals = np.array([s.params[name, o] for o in opts])
        ci = np.array([s.ci.get((name, o), (v, v)) for o, v in zip(opts, vals)])
        err = np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals]))
        ax.errorbar(x, vals, yerr=err, fmt="o", capsize=3)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(x, opts, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{name} (reference {s.reference} = 1), 95% bootstrap CI", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    return _save(fig, out / "rho.png")


def residuals(study: Study, out: Path) -> Path:
    """Relative residual (loss - fit) / loss against N, per optimizer, for shared and separate laws."""
    t = study.table
    fits = [(name, f) for name, f in (("shared", study.shared), ("separate", study.separate)) if f is not None]
    fig, axes = plt.subplots(1, len(fits), figsize=(6 * len(fits), 3.6), squeeze=False, sharey=True)
    opts = sorted(set(t.optimizer.tolist()))
    cmap = plt.get_cmap("tab20")
    for ax, (name, fit) in zip(axes[0], fits):
        for j, opt in enumerate(opts):
            if opt not in fit.laws:
                continue
            m = t.optimizer == opt
            rel = (t.loss[m] - fit.predict(t.N[m], t.D[m], opt)) / t.loss[m]
            jitter = np.exp(0.03 * (j - len(opts) / 2))  # separate overlapping optimizers a little
            ax.scatter(t.N[m] * jitter, rel * 100, s=10, color=cmap(j % 20), label=opt)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("N (parameters)")
        ax.set_title(f"{name} law residuals", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("(loss - fit) / loss  [%]")
    axes[0][-1].legend(fontsize=6, ncol=2)
    return _save(fig, out / "residuals.png")


def frontier(study: Study, out: Path) -> Path | None:
    """Compute-optimal loss L*(C) and N*(C) per optimizer under the shared law (cost = k_o N D)."""
    if study.shared is None:
        return None
    s = study.shared
    t = study.table
    cost = np.concatenate([s.compute_cost(t.N[t.optimizer == o], t.D[t.optimizer == o], o) for o in s.optimizers])
    C = np.geomspace(cost.min() / 3, cost.max() * 3, 80)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    cmap = plt.get_cmap("tab20")
    for j, opt in enumerate(s.optimizers):
        N_opt, D_opt, L_opt = s.compute_optimal(C, opt)
        axes[0].plot(C, L_opt, color=cmap(j % 20), label=opt, lw=1.2)
        axes[1].plot(C, N_opt, color=cmap(j % 20), label=opt, lw=1.2)
    for ax in axes:
        ax.set_xscale("log")
        ax.axvspan(cost.min(), cost.max(), color="grey", alpha=0.1, lw=0)
        ax.set_xlabel("compute C (FLOPs x step cost)" if s.cost_per_ND is not None else "compute C = 6ND")
        ax.grid(alpha=0.3, which="both")
    axes[1].set_yscale("log")
    axes[0].set_ylabel("compute-optimal loss L*(C)")
    axes[1].set_ylabel("N*(C)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("Compute-optimal frontier per optimizer (shaded: compute range of the data)", fontsize=10)
    return _save(fig, out / "frontier.png")


def tuning(study: Study, out: Path) -> list[Path]:
    """Loss against each swept hyperparameter, one line per cell, one figure per optimizer."""
    paths = []
    by_opt: dict[str, list[dict]] = {}
    for cell in study.table.tuning:
        by_opt.setdefault(cell["optimizer"], []).append(cell)
    for opt, cells in sorted(by_opt.items()):
        names = sorted({n for c in cells for n in c["swept"]})
        if not names:
            continue
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
        for ax, name in zip(axes[0], names):
            for cell in cells:
                pts = [(p["hyperparameters"], p["loss"]) for p in cell["points"]]
                xs = [(_lookup(hp, name), loss) for hp, loss in pts if _lookup(hp, name) is not None]
                if not xs:
                    continue
                xs.sort()
                ax.plot([a for a, _ in xs], [b for _, b in xs], marker="o", ms=3,
                        label=f"N={cell['N']:.3g} D={cell['D']:.3g}")
            ax.set_xscale("log")
            ax.set_xlabel(name)
            ax.set_ylabel("final loss")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=6)
        fig.suptitle(f"{opt}: loss vs swept hyperparameters per cell", fontsize=10)
        paths.append(_save(fig, out / f"tuning_{opt}.png"))
    return paths


def _lookup(hp: dict, dotted: str):
    node = hp
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) and node > 0 else None


def all_plots(study: Study, out: Path) -> list[Path]:
    paths = [loss_vs_D(study, out), loss_vs_N(study, out), rhos(study, out), residuals(study, out),
             frontier(study, out)] + tuning(study, out) + protocol_plots(study.document, out)
    return [p for p in paths if p is not None]
