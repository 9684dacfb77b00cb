"""Expand a sweep definition (``configs/sweep/<name>.yaml``) into grid points.

A grid point is just a list of ``optlaw train`` overrides plus its run id. The id
is computed from the point's composed config exactly as ``optlaw train`` does, so
re-expanding a sweep (or an sbatch template reading the manifest) always finds the
same run directories. The sweep names LLM points itself (the trainer's identity sits
below it); points of other tasks are named by a ``PointNaming`` the entry layer passes in.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from optlaw.config import as_config, compose, to_plain, validate
from optlaw.config.core import describe_error
from optlaw.config.sweep import SweepConfig
from optlaw.errors import ConfigError
from optlaw.train.budget import BudgetPlan, plan_budget
from optlaw.train.identity import run_id as llm_run_id

# Named axes of a sweep definition and the train-config key each one overrides.
NAMED_AXES = {
    "models": "model",
    "optimizers": "optimizer",
    "seeds": "seed",
    "tokens_per_param": "budget.tokens_per_param",
    "tokens": "budget.tokens",
}


@dataclass
class GridPoint:
    run_id: str
    label: str
    overrides: list[str]
    axes: dict[str, Any]                 # train key -> value for this point
    non_embedding_params: float | None = None
    tokens: float | None = None
    flops: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cfg: Any = field(default=None, repr=False)   # composed train config (not written to the manifest)
    plan: BudgetPlan | None = field(default=None, repr=False)  # the trainer's budget plan (LLM points)

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "label": self.label,
            "overrides": self.overrides,
            "axes": self.axes,
            "run_dir": f"runs/{self.run_id}",
            "non_embedding_params": self.non_embedding_params,
            "tokens": self.tokens,
            "flops": self.flops,
            **self.extra,
        }


@dataclass(frozen=True)
class PointNaming:
    """How a sweep names the points of a task: the root config that ``optlaw train <overrides>``
    composes (``train``, ``task_<t>``), and the run id of the composed, resolved config.

    The sweep knows LLM points (``LLM_POINTS``: the trainer sits below it); the entry layer,
    which knows every task, passes ``optlaw.entry.points.POINT_NAMING``.
    """

    root_config: Callable[[list[str]], str]
    run_id: Callable[[dict], str]


LLM_POINTS = PointNaming(root_config=lambda overrides: "train", run_id=llm_run_id)


def definition_to_plain(sweep_cfg: DictConfig | dict) -> dict:
    """The definition as plain containers, as the manifest stores it. A disabled ``tuning`` block is
    left out, so sweep directories made before tuning existed still match their definition."""
    if isinstance(sweep_cfg, (DictConfig, ListConfig)):
        definition = OmegaConf.to_container(sweep_cfg, resolve=True, enum_to_str=True)
    else:
        definition = dict(sweep_cfg)
    if not (definition.get("tuning") or {}).get("enabled"):
        definition.pop("tuning", None)
    return definition  # type: ignore[return-value]


def format_override_value(value: Any) -> str:
    """A value as Hydra override syntax (lists and dicts included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_override_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def axes_of(sweep: SweepConfig) -> list[tuple[str, list]]:
    """(train key, values) for every axis of a checked sweep (SweepConfig.check refuses empty axes)."""
    axes: list[tuple[str, list]] = []
    for sweep_key, train_key in NAMED_AXES.items():
        values = getattr(sweep, sweep_key)
        if values is not None:
            axes.append((train_key, list(values)))
    axes += [(key, list(values)) for key, values in sweep.extra_axes.items()]
    return axes


def optimizer_axes_for(sweep: SweepConfig, optimizer: str | None) -> list[tuple[str, list]]:
    return [(key, list(values)) for key, values in (sweep.optimizer_axes.get(optimizer) or {}).items()]


def point_label(axes: dict[str, Any]) -> str:
    """Readable prefix of the run id, e.g. ``llama_1m-adamw-tpp20-s0-lr_mult0.5``."""
    parts = []
    for key, value in axes.items():
        text = str(value).replace("/", "_")
        if key == "model" or key == "optimizer":
            parts.append(text)
        elif key == "seed":
            parts.append(f"s{text}")
        elif key == "budget.tokens_per_param":
            parts.append(f"tpp{text}")
        elif key == "budget.tokens":
            parts.append(f"tok{text}")
        else:
            parts.append(f"{key.split('.')[-1]}{text}")
    return "-".join(parts)


def expand(definition: dict, extra_fixed: list[str] | None = None,
           naming: PointNaming = LLM_POINTS) -> list[GridPoint]:
    """Every grid point of a sweep, in a stable order; composes each to check it, plan it and name it.

    ``definition``: the sweep section (a plain dict, a composed node or a SweepConfig).
    A tuning sweep's points come from optlaw.sweep.tuning instead, round by round.
    """
    sweep = checked_sweep(definition, naming)
    if sweep.tuning.enabled:
        raise ConfigError(f"sweep {sweep.name} tunes its hyperparameters: its points come round by round from "
                          "optlaw.sweep.tuning.TuningPlanner (optlaw sweep does this), not from one expansion")
    fixed = fixed_overrides(sweep, extra_fixed)
    points: list[GridPoint] = []
    composed: list[GridPoint] = []
    seen: set[str] = set()
    for point_axes in axis_combinations(sweep):
        point = make_point(sweep.name, point_axes, fixed, naming, like=composed)
        if point.run_id in seen:
            raise ConfigError(
                f"sweep {sweep.name}: two points compose to the same config ({point.label}); "
                "an axis does not change the computation — remove it or fix its key"
            )
        seen.add(point.run_id)
        points.append(point)
    points = within_tokens_per_param_range(sweep, points)
    if not points:
        raise ConfigError(f"sweep {sweep.name}: the grid is empty; give every axis at least one value")
    if sweep.branching.enabled:
        plan_branches(points, budget_keys(sweep))
    return points


def checked_sweep(definition: dict | DictConfig | SweepConfig, naming: PointNaming = LLM_POINTS) -> SweepConfig:
    """The definition as a checked SweepConfig, refusing a task this naming cannot name."""
    sweep = as_config(SweepConfig, definition, "sweep")
    if sweep.task != "llm" and naming is LLM_POINTS:
        raise ConfigError(f"sweep {sweep.name}: task={sweep.task} points are named by the entry layer; "
                          "run the sweep with `optlaw sweep` (or pass optlaw.entry.points.POINT_NAMING)")
    return sweep


def fixed_overrides(sweep: SweepConfig, extra_fixed: list[str] | None = None) -> list[str]:
    """The overrides every point gets: the task, ``fixed``, the command line's, and branching's schedule."""
    fixed = [f"{k}={format_override_value(v)}" for k, v in sweep.fixed.items()]
    fixed += list(extra_fixed or [])
    fixed += branching_schedule_overrides(sweep)
    return [f"task={sweep.task}", *fixed]


def axis_combinations(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every combination of the axes (train key -> value), per-optimizer axes included, in a stable order."""
    base_axes = axes_of(sweep)
    combos: list[dict[str, Any]] = []
    for combo in itertools.product(*[values for _, values in base_axes]):
        axes = {key: value for (key, _), value in zip(base_axes, combo)}
        opt_axes = optimizer_axes_for(sweep, axes.get("optimizer"))
        for opt_combo in itertools.product(*[values for _, values in opt_axes]) if opt_axes else [()]:
            point_axes = dict(axes)
            point_axes.update({key: value for (key, _), value in zip(opt_axes, opt_combo)})
            combos.append(point_axes)
    return combos


def budget_keys(sweep: SweepConfig) -> list[str]:
    return [key for key, _ in axes_of(sweep) if key.startswith("budget.")]


def make_point(sweep_name: str, axes: dict[str, Any], fixed: list[str], naming: PointNaming = LLM_POINTS,
               after: list[str] | None = None, like: list[GridPoint] | None = None) -> GridPoint:
    """Compose, check and describe one point: ``axes`` as overrides, then ``fixed``, then ``after``.

    ``like``: points composed before (this function appends the ones it composes). When one of them
    differs from this point only in leaf values of its axes, this point is derived from its config
    (``derive_point``) instead of composed again.
    """
    overrides = [f"{k}={format_override_value(v)}" for k, v in axes.items()] + list(fixed) + list(after or [])
    try:
        for anchor in like or []:
            derived = derive_point(anchor, axes, overrides, naming)
            if derived is not None:
                return derived
        cfg = compose(naming.root_config(overrides), overrides)
        validate(cfg)  # every point is checked before anything runs
        point = describe_point(cfg, axes, overrides, naming)
    except ConfigError as exc:
        raise ConfigError(f"sweep {sweep_name}, point {point_label(axes) or '(the only one)'}: {exc}") from None
    if like is not None:
        like.append(point)
    return point


def derive_point(anchor: GridPoint, axes: dict[str, Any], overrides: list[str],
                 naming: PointNaming = LLM_POINTS) -> GridPoint | None:
    """The point composed from ``overrides`` (its ``axes`` first), derived from ``anchor``'s composed
    config without Hydra; None when that is not sure to give the same config.

    Why: a Hydra compose costs 0.1-0.5 s, and a grid's cells mostly differ in leaf values (the
    budget, the seed) of a few composed configs. Hydra applies a plain ``key=value`` override
    after the defaults list is merged, in order, as ``OmegaConf.update(cfg, key, value, merge=True)``
    of the parsed value; when the axes come first, no later override names their keys and the
    anchor has the same keys and later overrides, setting the changed leaves on a copy of the
    anchor's config gives the same config (tests/test_sweep_grid.py checks it on the demo's grid).
    """
    if anchor.cfg is None or list(anchor.axes) != list(axes):
        return None
    n_axes = len(axes)
    if anchor.overrides[n_axes:] != overrides[n_axes:]:
        return None
    changed = [i for i, key in enumerate(axes) if anchor.overrides[i] != overrides[i]]
    later_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides[n_axes:]}
    keys = list(axes)
    if any(keys[i] in later_keys or not _is_leaf(anchor.cfg, keys[i]) for i in changed):
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([overrides[i] for i in changed])
    if any(o.key_or_group != keys[i] or o.is_delete() or o.is_add() or o.is_force_add() or o.package is not None
           for o, i in zip(parsed, changed)):
        return None
    cfg = copy.deepcopy(anchor.cfg)
    try:
        for override in parsed:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_error(exc)) from None
    validate(cfg)
    return describe_point(cfg, dict(axes), list(overrides), naming)


def _is_leaf(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` names an existing value (not a section, so not a config group) of ``cfg``."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
    if not isinstance(parent, DictConfig) or name not in parent:
        return False
    return not isinstance(parent._get_node(name), (DictConfig, ListConfig))


def with_values(sweep_name: str, base: GridPoint, values: dict[str, Any], naming: PointNaming = LLM_POINTS) -> GridPoint:
    """``base`` with leaf keys set to ``values``, as if ``key=value`` overrides followed its own.

    Equal to composing ``base.overrides + [key=value ...]`` (the overrides are appended, last wins
    in Hydra as here), without another Hydra compose: a tuning sweep derives every setting of a
    cell from one composed point, and a compose costs 0.1-0.5 s.
    """
    cfg = copy.deepcopy(base.cfg)
    extra = [f"{k}={format_override_value(v)}" for k, v in values.items()]
    axes = {**base.axes, **values}
    try:
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)
        validate(cfg)
        return describe_point(cfg, axes, [*base.overrides, *extra], naming)
    except (ConfigError, OmegaConfBaseException) as exc:
        detail = exc if isinstance(exc, ConfigError) else describe_error(exc)
        raise ConfigError(f"sweep {sweep_name}, point {point_label(axes)}: {detail}") from None


def within_tokens_per_param_range(sweep: SweepConfig, points: list[GridPoint]) -> list[GridPoint]:
    """Keep the points whose D / N_non_embedding lies in ``tokens_per_param_range: [lo, hi]``.

    Why: with an absolute ``tokens`` axis a model x tokens product puts the smallest model at
    hundreds of tokens per parameter and the largest below one; a scaling-law grid wants a band
    (e.g. 5-80) along the diagonal, which a product of axes cannot express."""
    if sweep.tokens_per_param_range is None:
        return points
    lo, hi = (float(bound) for bound in sweep.tokens_per_param_range)  # SweepConfig.check: 0 <= lo <= hi
    kept = [p for p in points if p.tokens is None or not p.non_embedding_params
            or lo <= p.tokens / p.non_embedding_params <= hi]
    if points and not kept:
        raise ConfigError(f"sweep {sweep.name}: no point has tokens per parameter in [{lo:g}, {hi:g}]; widen "
                          "tokens_per_param_range or change the tokens/models axes")
    return kept


def branching_schedule_overrides(sweep: SweepConfig) -> list[str]:
    """WSD with an absolute warmup for every point: then a budget's run equals the longest
    run up to that budget's decay start, so it can branch from there (the trainer checks this)."""
    branching = sweep.branching
    if not branching.enabled:
        return []
    return [
        "schedule.name=wsd",
        f"schedule.decay_fraction={branching.decay_fraction}",
        f"schedule.warmup_tokens={branching.warmup_tokens}",
    ]


def plan_branches(points: list[GridPoint], budget_keys: list[str]) -> None:
    """Group points that differ only in budget; the longest trains in full (the trunk) and keeps a
    checkpoint at every shorter budget's decay start; each shorter budget branches from it."""
    if not budget_keys:
        return
    groups: dict[str, list[GridPoint]] = {}
    for point in points:
        key = repr(sorted((k, repr(v)) for k, v in point.axes.items() if k not in budget_keys))
        groups.setdefault(key, []).append(point)
    for group in groups.values():
        if len(group) < 2:
            continue
        trunk = max(group, key=lambda p: (p.tokens or 0))
        keep_tokens = []
        for point in group:
            if point is trunk:
                continue
            start_tokens = point.plan.tokens_at(point.plan.decay_start_step)
            keep_tokens.append(start_tokens)
            point.extra["branch_from"] = {"run_id": trunk.run_id, "tokens": start_tokens}
        trunk.overrides.append(f"checkpoint.keep_at_tokens={format_override_value(sorted(keep_tokens))}")
        trunk.extra["branch_trunk"] = True


def describe_point(cfg: DictConfig, axes: dict[str, Any], overrides: list[str],
                   naming: PointNaming = LLM_POINTS) -> GridPoint:
    """The point's run id and, for an LLM point, its N, D and FLOPs from the trainer's own budget plan."""
    label = point_label(axes)
    point = GridPoint(run_id=naming.run_id(to_plain(cfg)), label=label, overrides=overrides, axes=axes, cfg=cfg)
    if cfg.task == "llm":
        from optlaw.models import model_stats  # imports torch: only when expanding, never for `optlaw status`

        stats = model_stats(cfg.model)
        point.plan = plan_budget(cfg, stats.n_total, stats.n_non_embedding)
        point.non_embedding_params = float(stats.n_non_embedding)
        point.tokens = float(point.plan.tokens_trained)  # D as trained (whole steps), the record's D
        point.flops = point.tokens * float(stats.flops_per_token)
    return point
