"""Report stage: report.md and PNG plots of a fitting study, optionally logged to W&B."""

from __future__ import annotations

from pathlib import Path

from optlaw.report.markdown import render


def write_report(study, out_dir, plots: bool = True) -> list[Path]:
    """Write report.md (and the PNGs unless ``plots`` is False) into ``out_dir``.

    Returns the paths written, report.md first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    if plots:
        from optlaw.report.plots import all_plots  # matplotlib only when plotting

        pngs = all_plots(study, out)
    report = out / "report.md"
    report.write_text(render(study.document, pngs))
    return [report] + pngs


__all__ = ["write_report"]
