"""Hydra command-line habits that ``optlaw train`` and ``optlaw sweep`` answer themselves.

optlaw composes configs with Hydra's compose API (optlaw/config), not ``@hydra.main``,
so Hydra's own flags never reach a parser: ``--cfg job`` would be read as an override,
and a multirun (``optimizer=adamw,muon``, ``-m``) would fail with "Ambiguous value".
Here ``--cfg job`` prints the resolved config, and a multirun is answered with the
``optlaw sweep`` command that runs the same grid.
"""

from __future__ import annotations

import shlex

from optlaw.errors import UserError
from optlaw.sweep.grid import NAMED_AXES

MULTIRUN_FLAGS = ("-m", "--multirun")
CFG_FLAGS = ("--cfg", "-c")
# The train key each named sweep axis sets, the other way round: optimizer -> optimizers.
AXIS_OF_KEY = {key: axis for axis, key in NAMED_AXES.items()}


def take_cfg_flag(argv: list[str]) -> tuple[bool, list[str]]:
    """(whether ``--cfg job`` was given, argv without it). Hydra's ``--resolve`` is accepted: we always resolve."""
    rest: list[str] = []
    wanted = False
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in CFG_FLAGS:
            value = value if eq else next(args, "")
            if value != "job":
                raise UserError(f"{name} {value or '(nothing)'}: optlaw prints only the run's config, `{name} job`; "
                                "Hydra's own config is not used (optlaw composes with the compose API)")
            wanted = True
        elif arg != "--resolve":
            rest.append(arg)
    if "--resolve" in argv and not wanted:
        raise UserError("--resolve goes with --cfg job (the printed config is always resolved)")
    return wanted, rest


def _sweep_values(override, arg: str) -> list[str]:
    """The values a Hydra sweep override lists, as Hydra reads them (``range(0,3)`` -> 0, 1, 2)."""
    from hydra.core.override_parser.types import ValueType

    if not override.is_discrete_sweep() or override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        raise UserError(f"{arg} sweeps over no finite list of values; a grid axis needs them listed, e.g. key=a,b,c")
    return list(override.sweep_string_iterator())


def _multirun_values(argv: list[str]) -> dict[int, list[str]]:
    """Position in ``argv`` -> the values of each Hydra multirun override there."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    found = {}
    for i, arg in enumerate(argv):
        if "=" not in arg or arg.startswith("-"):
            continue
        try:
            override = parser.parse_override(arg)
        except HydraException:
            continue  # not ours to judge: composing it reports the problem in one line
        if override.is_sweep_override():
            found[i] = _sweep_values(override, arg)
    return found


def _listed(values: list[str]) -> str:
    return "[" + ",".join(values) + "]"


def _as_axis(key: str, values: list[str]) -> str | None:
    """The ``optlaw sweep`` argument that makes ``key`` an axis with these values (None: an extra axis)."""
    listed = _listed(values)
    bare = key.lstrip("+~")
    if bare.startswith(("launcher.", "hydra.")) or bare in ("sweep", "launcher", "sweep_dir"):
        raise UserError(f"{key}={','.join(values)}: {bare} takes one value; a grid varies train keys "
                        "(see `optlaw sweep --help`)")
    if bare == "task":
        raise UserError(f"task={','.join(values)}: a sweep runs one task; run one sweep per task")
    if bare.startswith("sweep."):
        return f"{key}={listed}"  # a sweep key that takes a list: sweep.seeds=[0,1]
    if bare in AXIS_OF_KEY:
        return f"sweep.{AXIS_OF_KEY[bare]}={listed}"
    return None


def refuse_multirun(command: str, argv: list[str]) -> None:
    """Raise a one-line UserError showing the ``optlaw sweep`` command for a Hydra multirun in ``argv``."""
    values = _multirun_values(argv)
    flags = [arg for arg in argv if arg in MULTIRUN_FLAGS]
    if not values and not flags:
        return
    sweep_args: list[str] = ["sweep=grid"] if command == "train" else []
    extra: dict[str, str] = {}
    for i, arg in enumerate(argv):
        key, _, value = arg.partition("=")
        if arg in MULTIRUN_FLAGS:
            continue
        if i in values:
            axis = _as_axis(key, values[i])
            if axis is None:
                if not extra:
                    sweep_args.append("EXTRA_AXES")  # where the extra axes go, filled in below
                extra[key] = _listed(values[i])
            else:
                sweep_args.append(axis)
        elif command == "train" and key == "task":
            sweep_args.append(f"sweep.task={value}")
        elif command == "train" and key == "run_dir":
            sweep_args.append(f"sweep_dir={value}")  # a sweep puts each point's run directory under it
        else:
            sweep_args.append(arg)
    if extra:
        # `++` merges into the definition's extra_axes, keeping the axes it already has.
        merged = "++sweep.extra_axes={" + ",".join(f"{k}:{v}" for k, v in extra.items()) + "}"
        sweep_args[sweep_args.index("EXTRA_AXES")] = merged
    shown = " ".join(argv[i] for i in sorted(values)) or " ".join(flags)
    where = ("optlaw train runs one point, and a grid of points is a sweep" if command == "train"
             else "a sweep's axes are lists in its definition")
    raise UserError(f"{shown} is Hydra multirun syntax; {where}: {shlex.join(['optlaw', 'sweep', *sweep_args])}")
