"""``optlaw sweep`` and ``optlaw status``."""

from __future__ import annotations

import sys
from pathlib import Path

from optlaw.config import compose, to_plain
from optlaw.entry.points import POINT_NAMING
from optlaw.errors import UserError
from optlaw.sweep.grid import NAMED_AXES, definition_to_plain, expand
from optlaw.sweep.manifest import check_same_definition, read_manifest, write_manifest
from optlaw.sweep.state import DISPLAY_STATES, all_states, needs_run

SWEEP_USAGE = """\
usage: optlaw sweep sweep=NAME [launcher=local|slurm|slurm_cpu] [sweep_dir=PATH] [--dry-run] [--retry-diverged]
                    [sweep.KEY=VALUE ...] [launcher.KEY=VALUE ...] [TRAIN_KEY=VALUE ...]

Expand configs/sweep/NAME.yaml into grid points, write SWEEP_DIR/manifest.json, print
the plan, and run every point that has no finished record (done or diverged).
  sweep.KEY=VALUE     change the sweep definition (e.g. sweep.seeds=[0,1])
  launcher.KEY=VALUE  change the launcher (e.g. launcher.max_parallel=2, launcher.partition=gpu)
  TRAIN_KEY=VALUE     any other key is added to every point's `optlaw train` overrides
  --dry-run           write the manifest and print the plan; run nothing
  --retry-diverged    also rerun diverged points (their old run is kept beside the new one)
SWEEP_DIR defaults to sweeps/NAME. Rerunning the same command resumes the sweep.
"""

STATUS_USAGE = """\
usage: optlaw status [SWEEP_DIR]

Print every point of a sweep (done / running / pending / failed / diverged, final
loss, tokens, wall time) and a one-line summary. SWEEP_DIR defaults to '.'.
"""


def parse_sweep_args(argv: list[str]) -> dict:
    opts = {"sweep": None, "launcher": "local", "sweep_dir": None, "dry_run": False, "retry_diverged": False,
            "config_overrides": [], "point_overrides": []}
    for arg in argv:
        if arg == "--dry-run":
            opts["dry_run"] = True
        elif arg == "--retry-diverged":
            opts["retry_diverged"] = True
        elif arg.startswith("-"):
            raise UserError(f"unknown option {arg!r}; see `optlaw sweep --help`")
        elif "=" not in arg:
            raise UserError(f"expected KEY=VALUE, got {arg!r}; see `optlaw sweep --help`")
        else:
            key, value = arg.split("=", 1)
            bare = key.lstrip("+~")
            if key == "sweep":
                opts["sweep"] = value
            elif key == "launcher":
                opts["launcher"] = value
            elif key == "sweep_dir":
                opts["sweep_dir"] = value
            elif bare.startswith(("sweep.", "launcher.", "hydra.")):
                opts["config_overrides"].append(arg)
            else:
                opts["point_overrides"].append(arg)
    if not opts["sweep"]:
        raise UserError("name the sweep: optlaw sweep sweep=NAME (a file configs/sweep/NAME.yaml)")
    if opts["sweep_dir"] is None:
        opts["sweep_dir"] = str(Path("sweeps") / opts["sweep"])
    return opts


def main_sweep(argv: list[str]) -> int:
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(SWEEP_USAGE)
        return 0
    opts = parse_sweep_args(argv)
    cfg = compose(None, [f"+sweep={opts['sweep']}", f"+launcher={opts['launcher']}", *opts["config_overrides"]])
    definition = definition_to_plain(cfg.sweep)
    definition["cli_overrides"] = list(opts["point_overrides"])
    launcher_cfg = to_plain(cfg.launcher)
    sweep_dir = Path(opts["sweep_dir"])
    check_same_definition(sweep_dir, definition)
    points = expand(definition, opts["point_overrides"], naming=POINT_NAMING)
    manifest = write_manifest(sweep_dir, definition, points, opts["point_overrides"])
    states = all_states(sweep_dir, manifest)
    to_run = [s.run_id for s in states if needs_run(s, opts["retry_diverged"])]
    print(format_plan(manifest, states, to_run, launcher_cfg, sweep_dir))
    if opts["dry_run"] or not to_run:
        if not to_run:
            print("nothing to run: every point is finished or owned by a live launch")
        return 0
    if launcher_cfg.get("name") == "slurm":
        from optlaw.sweep.slurm import submit

        job_ids = submit(sweep_dir, manifest, to_run, launcher_cfg, opts["retry_diverged"])
        print(f"submitted {len(job_ids)} points; follow with: optlaw status {sweep_dir}")
        return 0
    from optlaw.sweep.local import run_local

    results = run_local(sweep_dir, to_run, int(launcher_cfg.get("max_parallel") or 1), opts["retry_diverged"])
    print(summary_line(all_states(sweep_dir, manifest)))
    return 0 if all(status in ("done", "diverged") for status in results.values()) and len(results) == len(to_run) else 1


def format_plan(manifest: dict, states, to_run: list[str], launcher_cfg: dict, sweep_dir: Path) -> str:
    points = manifest["points"]
    throughput = float(launcher_cfg.get("throughput_flops_per_s") or 0)
    total_tokens = sum(p["tokens"] or 0 for p in points)
    total_flops = sum(p["flops"] or 0 for p in points)
    todo = set(to_run)
    todo_flops = sum(p["flops"] or 0 for p in points if p["run_id"] in todo)
    lines = [f"sweep {manifest['sweep']}: {len(points)} points in {sweep_dir} (manifest.json written)"]
    header = f"  {'run_id':<44} {'N':>9} {'tokens':>9} {'FLOPs':>9} {'est h':>7}  state"
    lines.append(header)
    by_id = {s.run_id: s for s in states}
    for p in points:
        hours = (p["flops"] / throughput / 3600) if (p["flops"] and throughput) else None
        state = by_id[p["run_id"]]
        action = "to run" if p["run_id"] in todo else state.state
        lines.append(
            f"  {p['run_id']:<44} {_num(p.get('non_embedding_params')):>9} {_num(p['tokens']):>9} "
            f"{_num(p['flops']):>9} {_num(hours, '.2g'):>7}  {action}{_extra_axes_text(p)}"
        )
    hours_total = total_flops / throughput / 3600 if throughput else None
    hours_todo = todo_flops / throughput / 3600 if throughput else None
    lines.append(
        f"total: {_num(total_tokens)} tokens, {_num(total_flops)} FLOPs, ~{_num(hours_total, '.3g')} GPU-hours "
        f"at {throughput:.3g} FLOP/s (launcher.throughput_flops_per_s); to run now: {len(to_run)} points, "
        f"~{_num(hours_todo, '.3g')} GPU-hours"
    )
    done = [s.run_id for s in states if s.state in ("done", "diverged")]
    lines.append(f"already finished: {len(done)}" + (f" ({', '.join(done)})" if 0 < len(done) <= 8 else ""))
    return "\n".join(lines)


def _extra_axes_text(point: dict) -> str:
    """Axes the run id's label does not show (hyperparameters, extra axes), e.g. ``  lr_mult=0.5``."""
    extra = {k: v for k, v in (point.get("axes") or {}).items() if k not in NAMED_AXES.values()}
    text = " ".join(f"{k.split('.')[-1]}={v}" for k, v in extra.items())
    if point.get("branch_from"):
        text += f" branch@{point['branch_from']['tokens']}"
    return f"  {text.strip()}" if text.strip() else ""


def _num(value, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def summary_line(states) -> str:
    counts = {name: 0 for name in DISPLAY_STATES}
    for s in states:
        counts[s.state] += 1
    return f"{len(states)} points: " + ", ".join(f"{counts[name]} {name}" for name in DISPLAY_STATES)


def main_status(argv: list[str]) -> int:
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(STATUS_USAGE)
        return 0
    if len(argv) > 1:
        raise UserError("optlaw status takes one SWEEP_DIR; see `optlaw status --help`")
    sweep_dir = Path(argv[0] if argv else ".")
    manifest = read_manifest(sweep_dir)
    states = all_states(sweep_dir, manifest)
    print(format_status(states))
    print(summary_line(states))
    return 0


def format_status(states) -> str:
    lines = [f"{'run_id':<44} {'state':<9} {'final_loss':>10} {'tokens':>9} {'wall_s':>8}  note"]
    for s in states:
        record = s.record or {}
        loss = record.get("final_val_loss")
        lines.append(
            f"{s.run_id:<44} {s.state:<9} {_num(loss, '.4f'):>10} {_num(record.get('tokens_trained')):>9} "
            f"{_num(record.get('wall_time_s'), '.0f'):>8}  {s.note}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from optlaw.entry.cli import main

    sys.exit(main(["sweep", *sys.argv[1:]]))
