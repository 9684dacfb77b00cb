"""Report stage: report.md and PNG plots of a fitting study, optionally logged to W&B.

It takes the study the entry layer hands it (``study.document``, fit.json, for the tables;
the fit results for the curves) and imports nothing from the fit stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optlaw.report.markdown import render

if TYPE_CHECKING:  # hints only: report works on the study it is given and never imports fit
    from optlaw.fit import Study


def write_report(study: Study, out_dir, plots: bool = True) -> list[Path]:
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
