"""``optlaw sweep`` and ``optlaw status``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from optlaw.config import compose, to_plain
from optlaw.entry.overrides import refuse_multirun, take_cfg_flag
from optlaw.entry.points import POINT_NAMING
from optlaw.entry.tuning_view import format_tuning, progress_line
from optlaw.errors import UserError
from optlaw.sweep.claims import clean_stale
from optlaw.sweep.grid import NAMED_AXES, definition_to_plain, expand
from optlaw.sweep.manifest import check_same_definition, read_manifest, write_manifest
from optlaw.sweep.rounds import plan_and_write, run_rounds
from optlaw.sweep.state import DISPLAY_STATES, all_states, needs_run
from optlaw.sweep.tuning import TuningPlanner
from optlaw.sweep.tuning_replay import read_tuning

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
  --follow            tuning sweeps on SLURM: wait for each round's jobs and queue the next round
  --cfg job           print the resolved sweep definition and launcher; run nothing
SWEEP_DIR defaults to sweeps/NAME. Rerunning the same command resumes the sweep; a tuning
sweep (tuning.enabled) plans its next round from the finished records.

exit status: 0 every point of the grid is finished (done or diverged), whoever ran it
  (launcher=slurm: every point is finished or queued); 1 a point run here failed or
  stopped unfinished (see SWEEP_DIR/logs/RUN_ID.log); 2 bad input; 75 the rest is
  finished but points are still run by another live launch (wait, or rerun later);
  130 Ctrl-C, 143 SIGTERM (the running points checkpointed; rerun to resume).
"""

STATUS_USAGE = """\
usage: optlaw status [SWEEP_DIR]

Print every point of a sweep (done / running / pending / failed / diverged, final
loss, tokens, wall time) and a one-line summary; for a tuning sweep also each cell's
round, bracket, current winner and whether it is resolved. SWEEP_DIR defaults to '.'.
"""


@dataclass(frozen=True, kw_only=True)
class SweepRequest:
    """One launch of a sweep; ``optlaw sweep`` builds it from its command line, the demo directly."""

    sweep: str                           # configs/sweep/<sweep>.yaml
    launcher: str = "local"              # configs/launcher/<launcher>.yaml
    sweep_dir: str | Path | None = None  # default sweeps/<sweep>
    overrides: tuple[str, ...] = ()      # sweep.KEY / launcher.KEY change those configs; any other key every point
    dry_run: bool = False                # write the manifest and print the plan; run nothing
    retry_diverged: bool = False         # also rerun diverged points
    follow: bool = False                 # tuning on SLURM: wait for each round and queue the next

    @property
    def directory(self) -> Path:
        return Path(self.sweep_dir) if self.sweep_dir is not None else Path("sweeps") / self.sweep

    def split_overrides(self) -> tuple[list[str], list[str]]:
        """(overrides of the sweep and launcher configs, overrides of every point's train config)."""
        config, point = [], []
        for arg in self.overrides:
            key = arg.split("=", 1)[0]
            if key in ("sweep", "launcher", "sweep_dir"):
                raise UserError(f"{arg}: give the {key} as its own setting, not as an override")
            (config if key.lstrip("+~").startswith(("sweep.", "launcher.", "hydra.")) else point).append(arg)
        return config, point


# Exit status of `optlaw sweep` (documented in SWEEP_USAGE and docs/sweeps.md).
SWEEP_DONE = 0             # every point of the grid is finished (done or diverged), whoever ran it
SWEEP_UNFINISHED = 1       # a point run here failed or stopped unfinished (its log says why)
SWEEP_HELD_ELSEWHERE = 75  # EX_TEMPFAIL: the rest is finished, but points are still run by another live launch


@dataclass(frozen=True)
class SweepOutcome:
    """What one launch did: the points it found unfinished, and how those run here ended."""

    sweep_dir: Path
    to_run: tuple[str, ...]              # points without a finished record when the launch started
    statuses: dict[str, str]             # run id -> record status, for points run here (local launcher)
    job_ids: tuple[str, ...] = ()        # SLURM jobs submitted for the points
    finished: bool = True                # every point of the grid ended done or diverged (or was queued, SLURM)
    held: tuple[str, ...] = ()           # points still run by another live launch when this one ended

    @property
    def exit_code(self) -> int:
        if self.finished:
            return SWEEP_DONE
        return SWEEP_HELD_ELSEWHERE if self.held and self.only_held_left else SWEEP_UNFINISHED

    @property
    def only_held_left(self) -> bool:
        """Nothing run here ended unfinished: what is left is held by another launch."""
        return all(status in ("done", "diverged") for status in self.statuses.values())


def parse_sweep_args(argv: list[str]) -> SweepRequest:
    fields: dict = {"sweep": None, "overrides": []}
    for arg in argv:
        if arg == "--dry-run":
            fields["dry_run"] = True
        elif arg == "--retry-diverged":
            fields["retry_diverged"] = True
        elif arg == "--follow":
            fields["follow"] = True
        elif arg.startswith("-"):
            raise UserError(f"unknown option {arg!r}; see `optlaw sweep --help`")
        elif "=" not in arg:
            raise UserError(f"expected KEY=VALUE, got {arg!r}; see `optlaw sweep --help`")
        else:
            key, value = arg.split("=", 1)
            if key in ("sweep", "launcher", "sweep_dir"):
                fields[key] = value
            else:
                fields["overrides"].append(arg)
    if not fields["sweep"]:
        raise UserError("name the sweep: optlaw sweep sweep=NAME (a file configs/sweep/NAME.yaml)")
    return SweepRequest(**{**fields, "overrides": tuple(fields["overrides"])})


def main_sweep(argv: list[str]) -> int:
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(SWEEP_USAGE)
        return 0
    print_config, argv = take_cfg_flag(argv)
    refuse_multirun("sweep", argv)
    request = parse_sweep_args(argv)
    if print_config:
        print(OmegaConf.to_yaml(resolved_config(request)), end="")
        return 0
    return run_sweep(request).exit_code


def composed(request: SweepRequest) -> tuple[dict, dict]:
    """(the sweep definition with the overrides every point gets, the launcher config), both plain."""
    config_overrides, point_overrides = request.split_overrides()
    cfg = compose(None, [f"+sweep={request.sweep}", f"+launcher={request.launcher}", *config_overrides])
    definition = definition_to_plain(cfg.sweep)
    definition["cli_overrides"] = list(point_overrides)
    return definition, to_plain(cfg.launcher)


def resolved_config(request: SweepRequest) -> DictConfig:
    """What `optlaw sweep --cfg job` prints: the definition, its launcher and its folder."""
    definition, launcher_cfg = composed(request)
    return OmegaConf.create({"sweep": definition, "launcher": launcher_cfg, "sweep_dir": str(request.directory)})


def run_sweep(request: SweepRequest) -> SweepOutcome:
    """Expand the grid, write SWEEP_DIR/manifest.json, print the plan, and run (or submit) every unfinished point."""
    definition, launcher_cfg = composed(request)
    point_overrides = definition["cli_overrides"]
    sweep_dir = request.directory
    check_same_definition(sweep_dir, definition)
    if "tuning" in definition:  # definition_to_plain keeps the block only when tuning is enabled
        return run_tuning_sweep(request, definition, launcher_cfg)
    points = expand(definition, point_overrides, naming=POINT_NAMING)
    manifest = write_manifest(sweep_dir, definition, points, point_overrides)
    if not request.dry_run:
        stale = clean_stale(sweep_dir)
        if stale:
            print(f"removed {len(stale)} stale claims of launches that died: {', '.join(stale)}")
    states = all_states(sweep_dir, manifest)
    to_run = tuple(s.run_id for s in states if needs_run(s, request.retry_diverged))
    print(format_plan(manifest, states, list(to_run), launcher_cfg, sweep_dir))
    for s in states:
        if s.state == "corrupt":
            print(f"corrupt: {s.note}; a launch keeps a copy and reruns the point (from its checkpoint when one loads)")
    if request.dry_run:
        if not to_run:
            print("nothing to run: every point is finished or owned by a live launch")
        elif launcher_cfg.get("name") == "slurm":
            from optlaw.sweep.slurm import dry_run_text, write_sbatch_scripts

            print(dry_run_text(sweep_dir, manifest, list(to_run), launcher_cfg))
            for script in write_sbatch_scripts(sweep_dir, manifest, list(to_run), launcher_cfg):
                print(f"plain sbatch alternative: sbatch {script}")
        return SweepOutcome(sweep_dir, to_run, {})
    if not to_run:
        print("nothing to run: every point is finished or owned by a live launch")
        if launcher_cfg.get("name") == "slurm":  # queued or finished is all a submission can do
            return SweepOutcome(sweep_dir, to_run, {})
        return _local_outcome(sweep_dir, manifest, to_run, {})
    if launcher_cfg.get("name") == "slurm":
        from optlaw.sweep.slurm import submit

        job_ids = submit(sweep_dir, manifest, list(to_run), launcher_cfg, request.retry_diverged)
        print(f"submitted {len(job_ids)} points; follow with: optlaw status {sweep_dir}")
        return SweepOutcome(sweep_dir, to_run, {}, tuple(str(j) for j in job_ids))
    from optlaw.sweep.local import run_local

    results = run_local(sweep_dir, list(to_run), int(launcher_cfg.get("max_parallel") or 1), request.retry_diverged,
                        in_process=bool(launcher_cfg.get("in_process", True)))
    return _local_outcome(sweep_dir, manifest, to_run, results)


def _local_outcome(sweep_dir: Path, manifest: dict, to_run: tuple[str, ...], results: dict[str, str]) -> SweepOutcome:
    """The outcome judged on the whole grid as it stands now, whoever ran each point."""
    states = all_states(sweep_dir, manifest)
    print(summary_line(states))
    held = tuple(s.run_id for s in states if s.state == "running")
    finished = all(s.state in ("done", "diverged") for s in states)
    outcome = SweepOutcome(sweep_dir, to_run, dict(results), finished=finished, held=held)
    if outcome.exit_code == SWEEP_HELD_ELSEWHERE:
        owners = sorted({next(s.note for s in states if s.run_id == r) for r in held})
        print(f"{len(held)} points are still being run by another live launch ({', '.join(owners)}); "
              f"wait for it (optlaw status {sweep_dir}), or run this command again: it resumes what is left "
              f"(exit status {SWEEP_HELD_ELSEWHERE})")
    return outcome


def run_tuning_sweep(request: SweepRequest, definition: dict, launcher_cfg: dict) -> SweepOutcome:
    """Plan a round from the records, run it, plan the next, until every cell is finished (docs/sweeps.md, "Tuning")."""
    sweep_dir = request.directory
    point_overrides = definition["cli_overrides"]
    planner = TuningPlanner(definition, sweep_dir, point_overrides, naming=POINT_NAMING)
    slurm = launcher_cfg.get("name") == "slurm"
    shown: dict = {"plan": False, "to_run": []}

    def on_plan(manifest, plan, states, to_run):
        if not shown["plan"]:
            shown["to_run"] = list(to_run)
            current = {p.run_id for p in plan.points}
            view = {**manifest, "points": [p for p in manifest["points"] if p["run_id"] in current]}
            print(format_plan(view, states, to_run, launcher_cfg, sweep_dir))
            print(format_tuning(plan.state))
            shown["plan"] = True
        else:
            print(progress_line(plan.state, to_run), flush=True)

    def launch(run_ids, more=None):
        if slurm:
            from optlaw.sweep.slurm import submit

            job_ids = submit(sweep_dir, read_manifest(sweep_dir), run_ids, launcher_cfg, request.retry_diverged)
            print(f"submitted {len(job_ids)} points; follow with: optlaw status {sweep_dir}", flush=True)
            return {}, [str(j) for j in job_ids]
        from optlaw.sweep.local import run_local

        return run_local(sweep_dir, run_ids, int(launcher_cfg.get("max_parallel") or 1), request.retry_diverged,
                         in_process=bool(launcher_cfg.get("in_process", True)), more=more), []

    outcome = run_rounds(sweep_dir, plan_and_write(planner), launch, blocking=not slurm, follow=request.follow,
                         retry_diverged=request.retry_diverged, dry_run=request.dry_run, on_plan=on_plan,
                         stream=not slurm)
    if request.dry_run:
        print("dry run: later rounds are planned from these results when the sweep runs")
        return SweepOutcome(sweep_dir, tuple(shown["to_run"]), {})
    manifest = read_manifest(sweep_dir)
    if not outcome.launched:
        print("nothing to run: every point is finished or owned by a live launch")
    print(format_tuning(outcome.plan.state))
    print(summary_line(all_states(sweep_dir, manifest)))
    if outcome.stopped:
        print(f"stopped: {outcome.stopped}")
    return SweepOutcome(sweep_dir, tuple(outcome.launched), dict(outcome.statuses), tuple(outcome.job_ids),
                        finished=outcome.complete or outcome.waiting)


def format_plan(manifest: dict, states, to_run: list[str], launcher_cfg: dict, sweep_dir: Path) -> str:
    points = manifest["points"]
    throughput, source = launcher_throughput(launcher_cfg)
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
        f"at {throughput:.3g} FLOP/s ({source}); to run now: {len(to_run)} points, "
        f"~{_num(hours_todo, '.3g')} GPU-hours"
    )
    done = [s.run_id for s in states if s.state in ("done", "diverged")]
    lines.append(f"already finished: {len(done)}" + (f" ({', '.join(done)})" if 0 < len(done) <= 8 else ""))
    return "\n".join(lines)


def launcher_throughput(launcher_cfg: dict) -> tuple[float, str]:
    """(FLOP/s for the plan's hours, where the number comes from): the config's, or measured here (local launcher)."""
    given = launcher_cfg.get("throughput_flops_per_s")
    if given is not None:
        return float(given), "launcher.throughput_flops_per_s"
    from optlaw.sweep.throughput import local_throughput

    found = local_throughput()
    return float(found["flops_per_s"]), f"measured on this machine {found['measured_at']}, {found['model']} training steps"


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
    shown = [name for name in DISPLAY_STATES if name != "corrupt" or counts[name]]  # corrupt only when there is one
    return f"{len(states)} points: " + ", ".join(f"{counts[name]} {name}" for name in shown)


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
    tuning = read_tuning(sweep_dir)
    if tuning is not None:
        print(format_tuning(tuning))
    return 0


def format_status(states) -> str:
    lines = [f"{'run_id':<44} {'state':<9} {'final_loss':>10} {'tokens':>9} {'wall_s':>8}  note"]
    for s in states:
        record = s.record
        loss, tokens, wall = (record.final_val_loss, record.tokens_trained, record.wall_time_s) if record else (None,) * 3
        lines.append(
            f"{s.run_id:<44} {s.state:<9} {_num(loss, '.4f'):>10} {_num(tokens):>9} "
            f"{_num(wall, '.0f'):>8}  {s.note}"
        )
    return "\n".join(lines)
