"""Log a fitting study to W&B as one named run of job_type 'fit', in the sweep's group.

The run (``fit-<sweep or source>``) carries the headline numbers in its summary, every table
of report.md (parsed from the rendered report, so W&B shows exactly its columns), the plots,
and fit.json + report.md as a versioned artifact of type ``fit``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optlaw.errors import UserError
from optlaw.train.wandb_mirror import finish_and_flush

if TYPE_CHECKING:
    from optlaw.fit import Study

_CI_SUFFIXES = ("lo", "hi")


def fit_run_name(group: str | None, source: str | None) -> str:
    """``fit-<sweep>``, else ``fit-<source>`` (the runs folder or CSV the fit read)."""
    label = group or (Path(str(source).split(",")[0]).stem if source else "") or "study"
    return _artifact_safe(f"fit-{label}")


def _artifact_safe(name: str) -> str:
    # W&B artifact names allow letters, digits, '-', '_' and '.'.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120]


def _with_ci(out: dict[str, Any], key: str, value: Any, ci: Any) -> None:
    if value is None:
        return
    out[key] = value
    if ci:
        for suffix, bound in zip(_CI_SUFFIXES, ci):
            out[f"{key}_{suffix}"] = bound


def headline(doc: dict) -> dict[str, Any]:
    """The numbers a reader looks for first, flat for W&B's summary: the shared law's exponents
    and each optimizer's rho_N, rho_D and compute multiplier with their intervals, the separate
    laws' exponents, and every identifiability verdict fit.json has."""
    out: dict[str, Any] = {"n_points": doc.get("n_points"), "law": doc.get("law")}
    shared = doc.get("shared") or {}
    for key in ("alpha", "beta", "E", "A", "B", "allocation_exponent"):
        _with_ci(out, f"shared/{key}", shared.get(key), (shared.get("ci") or {}).get(key))
    for opt, o in (doc.get("optimizers") or {}).items():
        for key in ("rho_N", "rho_D", "compute_multiplier"):
            _with_ci(out, f"optimizers/{opt}/{key}", o.get(key), o.get(f"{key}_ci"))
    for opt, v in (doc.get("separate") or {}).items():
        for key in ("alpha", "beta", "E"):
            _with_ci(out, f"separate/{opt}/{key}", v.get(key), (v.get("ci") or {}).get(key))
    out.update(_verdicts(doc))
    return {k: v for k, v in out.items() if v is not None}


def _verdicts(node: Any, path: str = "") -> dict[str, str]:
    """``identifiability/<where>``: the verdict of every entry of fit.json that has one."""
    found: dict[str, str] = {}
    if isinstance(node, dict):
        verdict = node.get("identifiability")
        if isinstance(verdict, dict) and "verdict" in verdict:
            found[f"identifiability/{path or 'study'}"] = str(verdict["verdict"])
        for key, value in node.items():
            if key != "identifiability":
                found.update(_verdicts(value, f"{path}/{key}" if path else str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.update(_verdicts(value, f"{path}/{i}"))
    return found


def report_tables(markdown: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Every table of report.md as (header, rows) under ``report/<section>`` (``_2``, ... when a
    section has several). Parsed from the rendered text so W&B shows the report's exact columns."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    section, block = "report", []

    def close() -> None:
        if len(block) >= 2:
            header, rows = block[0], block[2:] if set("".join(block[1])) <= set("-: ") else block[1:]
            key = f"report/{section}"
            n = 2
            while key in tables:
                key, n = f"report/{section}_{n}", n + 1
            tables[key] = (header, [r + [""] * (len(header) - len(r)) for r in rows])
        block.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        close()
        if line.startswith("#"):
            # W&B derives an artifact name (<= 128 characters) from the key: keep the heading's start.
            slug = re.sub(r"[^a-z0-9]+", "_", line.lstrip("#").strip().lower()).strip("_")
            section = slug[:48].rstrip("_") or "report"
    close()
    return tables


def log_study(study: Study, files: list[Path], mode: str = "offline", project: str = "optlaw", group: str | None = None,
              out_dir: str | os.PathLike | None = None) -> str:
    """The fit's W&B run (see the module docstring). Returns the run's local directory.
    ``WANDB_DIR`` decides where offline files go."""
    try:
        import wandb
    except ImportError as exc:  # pragma: no cover - wandb is a dependency
        raise UserError("wandb is not installed; pip install wandb or use --wandb disabled") from exc
    doc = study.document
    name = fit_run_name(group, doc.get("source"))
    run = wandb.init(project=project, group=group, job_type="fit", mode=mode, name=name, reinit="create_new",
                     dir=os.environ.get("WANDB_DIR") or (str(out_dir) if out_dir else None),
                     config={k: doc.get(k) for k in ("law", "variant", "objective", "reference", "n_basis", "n_points",
                                                     "bootstrap_replicates", "source")})
    try:
        numbers = headline(doc)
        run.summary.update(numbers)
        report = next((p for p in files if p.name == "report.md"), None)
        if report is not None:
            tables = report_tables(report.read_text())
            run.log({key: wandb.Table(columns=header, data=rows) for key, (header, rows) in tables.items()})
        images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in files if p.suffix == ".png"}
        if images:
            run.log(images)
        artifact = wandb.Artifact(name, type="fit", metadata=numbers,
                                  description=f"fit.json and report.md of the {doc.get('law')} fit of {doc.get('source')}")
        for path in [Path(out_dir) / "fit.json" if out_dir else None, report]:
            if path is not None and path.is_file():
                artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)
        if report is not None:
            run.save(str(report), base_path=str(report.parent), policy="now")
        return str(run.dir)
    finally:
        finish_and_flush(run)
