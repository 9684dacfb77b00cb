"""What the report's plots draw: the compute axis names its cost basis, the frontier against the reference
uses each bootstrap replicate's own difference, L(N) lines follow the design's fixed quantity."""

from __future__ import annotations

import numpy as np

from optlaw.fit import RunTable, fit_shared, run_study
from optlaw.fit.synthetic import RHO, SIZES, synthetic_table, true_loss
from optlaw.report import plots


class _Doc:
    def __init__(self, document):
        self.document = document


def test_compute_axis_says_6ND_unless_the_step_cost_was_measured():
    assert "6ND" in plots._compute_label(_Doc({"compute": {"cost_measured": False}}))
    assert "6ND" in plots._compute_label(_Doc({}))
    assert "measured" in plots._compute_label(_Doc({"compute": {"cost_measured": True}}))


def test_frontier_gap_band_is_taken_replicate_by_replicate():
    fit = fit_shared(synthetic_table(seed=2), bootstrap=60, seed=1)
    C = np.geomspace(1e13, 1e16, 5)
    lo, hi = fit.frontier_band(C, "muon", relative_to="adamw")
    gap = fit.compute_optimal(C, "muon")[2] - fit.compute_optimal(C, "adamw")[2]
    assert np.all(lo <= gap) and np.all(gap <= hi) and np.all(hi < 0)   # muon is ahead, surely
    # replicate by replicate: much narrower than the difference of the two separate bands
    m_lo, m_hi = fit.frontier_band(C, "muon")
    a_lo, a_hi = fit.frontier_band(C, "adamw")   # the reference has its own band now
    assert np.all(hi - lo < (m_hi - m_lo) + (a_hi - a_lo))
    zero = fit.frontier_band(C, "adamw", relative_to="adamw")
    assert np.allclose(zero, 0.0)


def _capture(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_loss_vs_N_lines_follow_fixed_D_when_the_ratios_do_not_line_up(tmp_path, monkeypatch):
    # a fixed grid of D with irregular N (as the demo): grouping by D/N would give one or two points a line
    rows = [(o, N, D, true_loss(N, D, o)) for o in RHO for N in SIZES * np.array([1.0, 1.13, 0.91, 1.07, 0.97])
            for D in (2e8, 8e8, 3.2e9)]
    study = run_study(RunTable.from_columns(*zip(*rows)), bootstrap=0, holdout=None)
    figures = _capture(monkeypatch)
    plots.loss_vs_N(study, tmp_path)
    labels = [t.get_text() for t in figures[0].legends[0].get_texts()]
    assert labels == ["D=200M", "D=800M", "D=3.2B"]
    # a design of fixed tokens per parameter keeps its D/N lines
    study = run_study(synthetic_table(seed=1), bootstrap=0, holdout=None)
    plots.loss_vs_N(study, tmp_path)
    labels = [t.get_text() for t in figures[1].legends[0].get_texts()]
    assert labels == ["D/N=5", "D/N=10", "D/N=20", "D/N=40", "D/N=80"]


def test_frontier_with_many_optimizers_shows_the_gap_per_optimizer_with_intervals(tmp_path, monkeypatch):
    table = synthetic_table(seed=5)
    extra = []   # four more optimizers: past four, bands over C overlap; the gap panel turns into rows
    for k, name in enumerate(("a1", "a2", "a3", "a4")):
        m = table.optimizer == "muon"
        extra.append(RunTable.from_columns([name] * int(m.sum()), table.N[m], table.D[m],
                                           table.loss[m] * (1 + 0.01 * (k + 1)), flops=table.flops[m]))
    big = RunTable.from_columns(
        np.concatenate([table.optimizer] + [t.optimizer for t in extra]), np.concatenate([table.N] + [t.N for t in extra]),
        np.concatenate([table.D] + [t.D for t in extra]), np.concatenate([table.loss] + [t.loss for t in extra]),
        flops=np.concatenate([table.flops] + [t.flops for t in extra]))
    study = run_study(big, bootstrap=20, holdout=None, law="compute")
    figures = _capture(monkeypatch)
    plots.frontier(study, tmp_path)
    gap = figures[0].axes[1]
    rows = [t.get_text() for t in gap.get_yticklabels()]
    assert sorted(rows) == sorted(o for o in study.shared.optimizers if o != "adamw")
    assert len(gap.get_lines()) >= 4 * len(rows)   # per row: two intervals and two points
    assert "6ND" in figures[0].axes[0].get_xlabel()
    assert any(list(line.get_xdata()) == [0.0, 0.0] for line in gap.get_lines())   # the reference's line


def _tuning_cell(points):
    return {"points": [{"hyperparameters": hp, "loss": 1.0} for hp in points]}


def test_tuning_plot_draws_one_panel_per_independent_knob():
    # Group lrs that a swept lr_mult scales (by a size-dependent base, so the ratio differs between
    # cells but not within one) are the same curve: one panel, lr_mult's; weight decay swept on its own stays.
    small = _tuning_cell([{"lr_mult": 1, "groups": {"head": {"lr": 0.01}}, "wd": 0.1},
                          {"lr_mult": 2, "groups": {"head": {"lr": 0.02}}, "wd": 0.1},
                          {"lr_mult": 2, "groups": {"head": {"lr": 0.02}}, "wd": 0.2}])
    large = _tuning_cell([{"lr_mult": 1, "groups": {"head": {"lr": 0.005}}, "wd": 0.1},
                          {"lr_mult": 4, "groups": {"head": {"lr": 0.02}}, "wd": 0.1}])
    assert plots._independent_keys([small, large], ["groups.head.lr", "lr_mult", "wd"]) == ["lr_mult", "wd"]
    # A group lr that does not follow lr_mult in some cell is a knob of its own.
    odd = _tuning_cell([{"lr_mult": 1, "groups": {"head": {"lr": 0.01}}}, {"lr_mult": 2, "groups": {"head": {"lr": 0.01}}}])
    assert plots._independent_keys([small, odd], ["groups.head.lr", "lr_mult"]) == ["lr_mult", "groups.head.lr"]


def test_a_log_axis_within_a_decade_labels_every_power_of_two_of_a_tuning_grid():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0.5, 1, 2, 4], [0.05, 0.0, 0.01, 0.1])
    plots._log_axis(ax, "x", plots._plain)
    fig.canvas.draw()
    shown = {t.get_text() for t in ax.get_xticklabels() if t.get_text()}
    plt.close(fig)
    assert {"0.5", "1", "2", "4"} <= shown


def test_a_doubling_sweep_gets_a_tick_at_every_power_of_two():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert plots._powers_of_two(values) and not plots._powers_of_two([1.0, 3.0, 9.0]) and not plots._powers_of_two([2.0])
    fig, ax = plt.subplots()
    ax.plot(values, [0.3, 0.1, 0.0, 0.02, 0.1, 0.4])
    plots._log_axis(ax, "x", plots._plain, base=2)
    fig.canvas.draw()
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert {"2", "4", "8", "16", "32", "64"} <= set(shown) and "5" not in shown and "10" not in shown


def test_log_ticks_thin_out_on_a_narrow_axis():
    # 1.1 decades (6k-80k) on a wide axis get 1-2-3-4-5-6-8; on a 4.5-inch panel 40k, 50k and 60k
    # would print over each other, so it drops to a sparser set whose labels stay apart.
    dense = plots._log_subs(1.1, 10.0)
    narrow = plots._log_subs(1.1, 4.5)
    assert 6.0 in dense and 4.0 in dense
    assert 6.0 not in narrow and 4.0 not in narrow and {1.0, 2.0} <= set(narrow)
    assert plots._log_subs(3.0, 5.0) == (1.0,)
    gap = dict(plots.LOG_SUBS)[narrow]
    assert gap * 4.5 / 1.1 >= plots.MIN_TICK_GAP_INCHES
