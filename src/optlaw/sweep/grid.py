"""Expand a sweep definition (``configs/sweep/<name>.yaml``) into grid points.

A grid point is just a list of ``optlaw train`` overrides plus its run id. The id
is computed from the point's composed train config exactly as the trainer does,
so re-expanding a sweep (or an sbatch template reading the manifest) always finds
the same run directories.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from optlaw.config import compose, to_plain
from optlaw.errors import ConfigError

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


def definition_to_plain(sweep_cfg: DictConfig | dict) -> dict:
    if isinstance(sweep_cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(sweep_cfg, resolve=True)  # type: ignore[return-value]
    return dict(sweep_cfg)


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


def axes_of(definition: dict) -> list[tuple[str, list]]:
    """(train key, values) for every axis; raises ConfigError for an empty or malformed axis."""
    name = definition.get("name", "?")
    if definition.get("tokens_per_param") is not None and definition.get("tokens") is not None:
        raise ConfigError(
            f"sweep {name}: both 'tokens_per_param' and 'tokens' are axes; keep one and set the other to null"
        )
    axes: list[tuple[str, list]] = []
    for sweep_key, train_key in NAMED_AXES.items():
        values = definition.get(sweep_key)
        if values is None:
            continue
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise ConfigError(f"sweep {name}: axis '{sweep_key}' is an empty list, so the grid is empty; give it values or set it to null")
        axes.append((train_key, values))
    for key, values in (definition.get("extra_axes") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep {name}: extra_axes.{key} must be a non-empty list of values")
        axes.append((key, values))
    return axes


def optimizer_axes_for(definition: dict, optimizer: str | None) -> list[tuple[str, list]]:
    per_optimizer = definition.get("optimizer_axes") or {}
    unknown = set(per_optimizer) - set(definition.get("optimizers") or [])
    if unknown:
        raise ConfigError(
            f"sweep {definition.get('name')}: optimizer_axes names {sorted(unknown)}, which are not in 'optimizers'; "
            "add them to optimizers or remove their entry"
        )
    axes = []
    for key, values in (per_optimizer.get(optimizer) or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep {definition.get('name')}: optimizer_axes.{optimizer}.{key} must be a non-empty list")
        axes.append((key, values))
    return axes


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


def expand(definition: dict, extra_fixed: list[str] | None = None) -> list[GridPoint]:
    """Every grid point of a sweep, in a stable order; composes each to check it and hash it."""
    base_axes = axes_of(definition)
    fixed = [f"{k}={format_override_value(v)}" for k, v in (definition.get("fixed") or {}).items()]
    fixed += list(extra_fixed or [])
    fixed += branching_schedule_overrides(definition)
    task = definition.get("task")
    if task:
        fixed = [f"task={task}", *fixed]
    name = definition.get("name", "?")
    points: list[GridPoint] = []
    seen: set[str] = set()
    for combo in itertools.product(*[values for _, values in base_axes]):
        axes = {key: value for (key, _), value in zip(base_axes, combo)}
        opt_axes = optimizer_axes_for(definition, axes.get("optimizer"))
        for opt_combo in itertools.product(*[values for _, values in opt_axes]) if opt_axes else [()]:
            point_axes = dict(axes)
            point_axes.update({key: value for (key, _), value in zip(opt_axes, opt_combo)})
            overrides = [f"{k}={format_override_value(v)}" for k, v in point_axes.items()] + fixed
            try:
                cfg = compose(train_config_name(overrides), overrides)
            except ConfigError as exc:
                raise ConfigError(f"sweep {name}, point {point_label(point_axes)}: {exc}") from None
            point = describe_point(cfg, point_axes, overrides)
            if point.run_id in seen:
                raise ConfigError(
                    f"sweep {name}: two points compose to the same config ({point.label}); "
                    "an axis does not change the computation — remove it or fix its key"
                )
            seen.add(point.run_id)
            points.append(point)
    points = _within_tokens_per_param_range(definition, points)
    if not points:
        raise ConfigError(f"sweep {name}: the grid is empty; give every axis at least one value")
    if (definition.get("branching") or {}).get("enabled"):
        plan_branches(points, [key for key, _ in base_axes if key.startswith("budget.")])
    return points


def _within_tokens_per_param_range(definition: dict, points: list[GridPoint]) -> list[GridPoint]:
    """Keep the points whose D / N_non_embedding lies in ``tokens_per_param_range: [lo, hi]``.

    Why: with an absolute ``tokens`` axis a model x tokens product puts the smallest model at
    hundreds of tokens per parameter and the largest below one; a scaling-law grid wants a band
    (e.g. 5-80) along the diagonal, which a product of axes cannot express."""
    bounds = definition.get("tokens_per_param_range")
    if bounds is None:
        return points
    name = definition.get("name", "?")
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2 or not 0 <= float(bounds[0]) <= float(bounds[1]):
        raise ConfigError(f"sweep {name}: tokens_per_param_range must be [lo, hi] with 0 <= lo <= hi, got {bounds!r}")
    lo, hi = float(bounds[0]), float(bounds[1])
    kept = [p for p in points if p.tokens is None or not p.non_embedding_params
            or lo <= p.tokens / p.non_embedding_params <= hi]
    if points and not kept:
        raise ConfigError(f"sweep {name}: no point has tokens per parameter in [{lo:g}, {hi:g}]; widen "
                          "tokens_per_param_range or change the tokens/models axes")
    return kept


def branching_schedule_overrides(definition: dict) -> list[str]:
    """WSD with an absolute warmup for every point: then a budget's run equals the longest
    run up to that budget's decay start, so it can branch from there (the trainer checks this)."""
    branching = definition.get("branching") or {}
    if not branching.get("enabled"):
        return []
    if branching.get("warmup_tokens") is None:
        raise ConfigError(
            f"sweep {definition.get('name')}: branching needs branching.warmup_tokens (an absolute warmup, "
            "the same for every budget), e.g. sweep.branching.warmup_tokens=0"
        )
    return [
        "schedule.name=wsd",
        f"schedule.decay_fraction={branching.get('decay_fraction', 0.2)}",
        f"schedule.warmup_tokens={branching['warmup_tokens']}",
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
            start_tokens = decay_start_tokens(point.cfg)
            keep_tokens.append(start_tokens)
            point.extra["branch_from"] = {"run_id": trunk.run_id, "tokens": start_tokens}
        trunk.overrides.append(f"checkpoint.keep_at_tokens={format_override_value(sorted(keep_tokens))}")
        trunk.extra["branch_trunk"] = True


def decay_start_tokens(cfg: DictConfig) -> int:
    """Tokens trained when this point's WSD decay starts (the trainer's own budget arithmetic)."""
    from optlaw.models import model_stats
    from optlaw.train.budget import plan_budget

    stats = model_stats(cfg.model)
    plan = plan_budget(cfg, stats.n_total, stats.n_non_embedding)
    return plan.tokens_at(plan.decay_start_step)


def run_id_for(cfg: DictConfig, label: str) -> str:
    """The trainer's run id for a composed config, so manifest and record always agree."""
    plain = to_plain(cfg)
    try:  # the trainer owns run identity (proxy points included)
        from optlaw.train.identity import run_id as trainer_run_id
    except ImportError:  # trainer stage not installed: same hash, our label
        from optlaw.records import make_run_id

        return make_run_id(plain, label)
    return trainer_run_id(plain)


def train_config_name(overrides: list[str]) -> str:
    """The config ``optlaw train`` composes for these overrides (``task_<t>`` for proxy tasks)."""
    try:
        from optlaw.train.cli import config_name_for
    except ImportError:
        return "train"
    return config_name_for(overrides)


def describe_point(cfg: DictConfig, axes: dict[str, Any], overrides: list[str]) -> GridPoint:
    label = point_label(axes)
    point = GridPoint(run_id=run_id_for(cfg, label), label=label, overrides=overrides, axes=axes, cfg=cfg)
    point.non_embedding_params, point.tokens, point.flops = size_tokens_flops(cfg)
    return point


def size_tokens_flops(cfg: DictConfig) -> tuple[float | None, float | None, float | None]:
    """(N non-embedding, D tokens, training FLOPs) of an LLM point; Nones when unknown (proxy tasks)."""
    if cfg.get("task", "llm") != "llm" or "model" not in cfg:
        return None, None, None
    stats = _model_stats(cfg.model)
    if stats is None:
        return None, _absolute_tokens(cfg, None), None
    n_basis = stats["n_total"] if cfg.budget.get("param_basis") == "total" else stats["n_non_embedding"]
    tokens = _absolute_tokens(cfg, n_basis)
    flops = tokens * stats["flops_per_token"] if tokens is not None else None
    return float(stats["n_non_embedding"]), tokens, flops


def _absolute_tokens(cfg: DictConfig, n_params: float | None) -> float | None:
    budget = cfg.get("budget") or {}
    if budget.get("tokens") is not None:
        return float(budget.tokens)
    if budget.get("tokens_per_param") is not None and n_params is not None:
        return float(budget.tokens_per_param) * float(n_params)
    return None


def _model_stats(model_cfg: DictConfig) -> dict | None:
    try:  # the models stage owns parameter counting and FLOPs per token
        from optlaw.models import model_stats  # type: ignore[attr-defined]
    except ImportError:
        return None
    stats = model_stats(model_cfg)
    return {
        "n_total": float(stats.n_total),
        "n_non_embedding": float(stats.n_non_embedding),
        "flops_per_token": float(stats.flops_per_token),
    }
