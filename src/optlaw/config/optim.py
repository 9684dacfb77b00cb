"""The ``optimizer`` group: parameter groups, routing rules, width scaling and each algorithm's hyperparameters.

Every preset (configs/optimizer/<name>.yaml) names its schema below. The base schema holds
what all optimizers share; each algorithm's schema adds its hyperparameter sections, so a
resolved AdamW config has no ``muon`` key and the run id of a point stays what it was.
Hyperparameter defaults are the values of the cited source; a preset holds only its own
choices (per-group lr and weight decay, the lr rule).
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from optlaw.config.core import Choice, as_config
from optlaw.errors import ConfigError

# The four parameter groups every model is routed into (optlaw.optim.routing).
GROUP_NAMES = ("hidden_matrix", "embedding", "head", "norm_bias")
ROUTING_RULE_KEYS = ("group", "name", "module", "ndim")


class LrRule(Choice):
    none = "none"
    mup = "mup"


class WdRule(Choice):
    coupled = "coupled"
    independent = "independent"
    inverse_width = "inverse_width"


@dataclass
class GroupConfig:
    """One parameter group's algorithm and base values (at scaling.base_width)."""

    optimizer: str = MISSING
    """Algorithm for this group: adamw, muon, shampoo, soap or generic (muon/shampoo/soap: hidden_matrix only)."""
    lr: float = MISSING
    """Peak learning rate at scaling.base_width, before optimizer.lr_mult and the lr rule."""
    weight_decay: float = MISSING
    """Weight decay (its meaning follows scaling.wd_rule)."""


@dataclass
class GroupsConfig:
    """The four routing groups; every parameter lands in exactly one."""

    hidden_matrix: GroupConfig = MISSING
    """2-D weights inside the transformer blocks (attention and MLP projections)."""
    embedding: GroupConfig = MISSING
    """The input embedding."""
    head: GroupConfig = MISSING
    """The (untied) output head."""
    norm_bias: GroupConfig = MISSING
    """Norm gains and biases (every 0-D/1-D parameter)."""


@dataclass
class RoutingConfig:
    """Rules that route each parameter to a group (presets: configs/optimizer/routing/<name>.yaml)."""

    rules: List[Dict[str, Any]] = MISSING
    """First matching rule wins; a parameter no rule matches is an error. A rule has `group` plus any of `name` (regex searched in the parameter name), `module` (class name of the owning module), `ndim` (int or list); all given conditions must hold."""

    def check(self) -> None:
        check_routing_rules(self.rules)


def check_routing_rules(rules: Sequence[Mapping[str, Any]] | None) -> None:
    """Every rule names a known group, only known keys, at least one condition and a valid regex."""
    if not rules:
        raise ConfigError("optimizer.routing is empty; keep the default rules from configs/optimizer/routing/")
    for index, rule in enumerate(rules):
        unknown = set(rule) - set(ROUTING_RULE_KEYS)
        if unknown:
            raise ConfigError(
                f"optimizer.routing[{index}] has unknown key(s) {sorted(unknown)}; a rule has 'group' plus any of "
                "'name' (regex on the parameter name), 'module' (class name of the owning module), 'ndim'"
            )
        if rule.get("group") not in GROUP_NAMES:
            raise ConfigError(f"optimizer.routing[{index}].group is {rule.get('group')!r}; use one of {', '.join(GROUP_NAMES)}")
        if not (set(rule) & {"name", "module", "ndim"}):
            raise ConfigError(f"optimizer.routing[{index}] has no condition; add 'name', 'module' or 'ndim'")
        if "name" in rule:
            try:
                re.compile(str(rule["name"]))
            except re.error as exc:
                raise ConfigError(f"optimizer.routing[{index}].name is not a valid regex ({exc})") from None


@dataclass
class ScalingConfig:
    """How base values move with model width (optlaw.optim.scaling)."""

    base_width: int = 128
    """d_model at which the groups' base values hold."""
    lr_rule: LrRule = LrRule.none
    """none: lr = base lr x lr_mult; mup: also x base_width / d_model for lr_groups (muP, Yang et al. 2022)."""
    lr_groups: List[str] = field(default_factory=lambda: ["hidden_matrix"])
    """Groups the lr rule applies to."""
    wd_rule: WdRule = WdRule.coupled
    """coupled: torch's decay lr x wd per step; independent: wd is the per-step decay at peak lr (Wortsman et al. 2023); inverse_width: wd x base_width / d_model."""

    def check(self) -> None:
        if self.base_width <= 0:
            raise ConfigError(f"optimizer.scaling.base_width={self.base_width} must be a positive width")
        for group in self.lr_groups:
            if group not in GROUP_NAMES:
                raise ConfigError(f"optimizer.scaling.lr_groups names {group!r}; use groups from {', '.join(GROUP_NAMES)}")


@dataclass
class AdamWConfig:
    """torch.optim.AdamW (Loshchilov & Hutter 2019), torch's fused kernel on CPU and CUDA."""

    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    """(beta1, beta2): the Chinchilla / LLaMA (Touvron et al. 2023) pretraining betas."""
    eps: float = 1.0e-8
    """Denominator epsilon (torch's default)."""


class MuonAdjustLr(Choice):
    original = "original"
    match_rms_adamw = "match_rms_adamw"


class NsDtype(Choice):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"


@dataclass
class MuonConfig:
    """Muon (Jordan et al. 2024) with torch.optim.Muon semantics; optlaw.optim.muon."""

    momentum: float = 0.95
    """Momentum (Jordan et al. 2024; torch's default)."""
    nesterov: bool = True
    """Nesterov momentum (Jordan et al. 2024; torch's default)."""
    ns_steps: int = 5
    """Newton-Schulz iterations (Jordan et al. 2024)."""
    ns_coefficients: List[float] = field(default_factory=lambda: [3.4445, -4.7750, 2.0315])
    """Quintic Newton-Schulz coefficients (Jordan et al. 2024)."""
    eps: float = 1.0e-7
    """Norm floor before the iteration (torch's default)."""
    adjust_lr: MuonAdjustLr = MuonAdjustLr.match_rms_adamw
    """match_rms_adamw: update RMS matches AdamW's, so AdamW's lr and weight decay carry over (Liu et al. 2025, Moonshot); original: Keller Jordan's sqrt(max(1, A/B)), use lr ~0.02."""
    ns_dtype: NsDtype = NsDtype.auto
    """Newton-Schulz precision. auto: on CPU a short probe times both dtypes on this machine (cached per machine and torch build; bf16 is 17-30x slower where emulated, 2-4x faster with avx512_bf16/AMX); on CUDA bf16 where the GPU has native bf16 matmul. The dtype in use goes to the run record and stays for the run's life; a value named here is part of the run id (docs/optimizers.md)."""


class ShampooImpl(Choice):
    optlaw = "optlaw"
    meta = "meta"


class RootDtype(Choice):
    float32 = "float32"
    float64 = "float64"


@dataclass
class ShampooConfig:
    """Shampoo with Adam grafting and blocked preconditioners (Shi et al. 2023). Defaults: the DistributedShampoo settings of KellerJordan/modded-nanogpt records/102924_Optimizers (124M GPT), block_size from the library."""

    impl: ShampooImpl = ShampooImpl.optlaw
    """optlaw (optlaw.optim.shampoo) or meta (needs Meta's distributed_shampoo importable)."""
    betas: List[float] = field(default_factory=lambda: [0.95, 0.95])
    """First moment; EMA of the L/R statistics and of the grafting second moment (modded-nanogpt: best)."""
    epsilon: float = 1.0e-12
    """Added to the eigenvalues before the inverse 4th root (modded-nanogpt: best)."""
    grafting_epsilon: float = 1.0e-8
    """Adam grafting epsilon."""
    block_size: int = 1024
    """Largest preconditioner side; larger matrices are blocked (DistributedShampoo's default)."""
    precondition_frequency: int = 10
    """Recompute the inverse roots every this many steps."""
    start_preconditioning_step: int = 10
    """Grafted Adam alone before this step."""
    nesterov: bool = False
    """Nesterov momentum."""
    root_dtype: RootDtype = RootDtype.float32
    """Eigendecomposition precision: float32 (DistributedShampoo's default; retried in float64 if eigh fails) or float64 (~1.3x slower step on CPU, scripts/bench/bench_optim.py)."""


@dataclass
class SoapConfig:
    """SOAP (Vyas et al. 2024): Adam in the eigenbasis of Shampoo's preconditioner, via pytorch_optimizer.SOAP. Defaults: the reference code's."""

    betas: List[float] = field(default_factory=lambda: [0.95, 0.95])
    """Adam betas (Vyas et al. 2024 reference code)."""
    shampoo_beta: Optional[float] = None
    """EMA of the L/R statistics; null = betas[1] (reference code)."""
    eps: float = 1.0e-8
    """Adam epsilon."""
    precondition_frequency: int = 10
    """Eigenbasis refresh every this many steps (Vyas et al. 2024)."""
    max_precondition_dim: int = 10000
    """Larger dimensions keep the identity basis (reference code)."""
    correct_bias: bool = True
    """Adam bias correction."""
    normalize_gradient: bool = False
    """Normalize the gradient before the update."""


@dataclass
class OptimizerConfig:
    """What every optimizer preset has; the per-algorithm schemas below add hyperparameters."""

    name: str = MISSING
    """Name of the preset; part of the run label and the optimizer column of the fit."""
    lr_mult: float = 1.0
    """Multiplies every group's base lr (learning-rate tuning passes of a sweep); must be > 0."""
    groups: GroupsConfig = MISSING
    """Algorithm, lr and weight decay of each routing group."""
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    """Width scaling rules."""
    routing: RoutingConfig = MISSING
    """Routing rules, chosen as optimizer/routing=<name> (default: configs/optimizer/routing/default.yaml)."""

    def check(self) -> None:
        if self.lr_mult <= 0:
            raise ConfigError(f"optimizer.lr_mult is {self.lr_mult}; it must be > 0")
        for name in GROUP_NAMES:
            lr, weight_decay = self.base_values(name)
            if lr < 0 or weight_decay < 0:
                raise ConfigError(f"optimizer.groups.{name}: lr and weight_decay must be >= 0 (got {lr}, {weight_decay})")

    def base_values(self, group: str) -> tuple[float, float]:
        """(lr, weight_decay) of ``group`` at scaling.base_width, before lr_mult and the width rules."""
        spec = getattr(self.groups, group)
        return spec.lr, spec.weight_decay


@dataclass
class WithAdamWConfig(OptimizerConfig):
    """A preset whose groups may name adamw (the built-in algorithms use it outside hidden matrices)."""

    adamw: AdamWConfig = field(default_factory=AdamWConfig)
    """AdamW hyperparameters (every group that names adamw)."""


@dataclass
class AdamWOptimizerConfig(WithAdamWConfig):
    """AdamW on every group."""

    name: str = "adamw"


@dataclass
class MuonOptimizerConfig(WithAdamWConfig):
    """Muon on hidden matrices, AdamW elsewhere."""

    name: str = "muon"
    muon: MuonConfig = field(default_factory=MuonConfig)
    """Muon hyperparameters."""


@dataclass
class ShampooOptimizerConfig(WithAdamWConfig):
    """Shampoo on hidden matrices, AdamW elsewhere."""

    name: str = "shampoo"
    shampoo: ShampooConfig = field(default_factory=ShampooConfig)
    """Shampoo hyperparameters."""


@dataclass
class SoapOptimizerConfig(WithAdamWConfig):
    """SOAP on hidden matrices, AdamW elsewhere."""

    name: str = "soap"
    soap: SoapConfig = field(default_factory=SoapConfig)
    """SOAP hyperparameters."""


@dataclass
class GenericOptimizerConfig(OptimizerConfig):
    """Any torch.optim.Optimizer class by import path, routed like AdamW (one optimizer, four groups)."""

    name: str = "generic"
    cls: str = "torch.optim.AdamW"
    """Import path of the class (torch.optim, torch_optimizer, pytorch_optimizer, ...); the library is imported only when named."""
    kwargs: Dict[str, Any] = field(default_factory=lambda: {"lr": None, "weight_decay": None})
    """Constructor arguments. lr / weight_decay, when not null, replace every group's base values; other arguments are new keys: +optimizer.kwargs.betas=[0.9,0.99]."""

    def check(self) -> None:
        if not self.cls:
            raise ConfigError("optimizer.cls is missing; e.g. optimizer=generic optimizer.cls=torch_optimizer.Lamb")
        super().check()

    def base_values(self, group: str) -> tuple[float, float]:
        # kwargs.lr / kwargs.weight_decay, when given, mean what a user of the class expects: every group's value.
        lr, weight_decay = super().base_values(group)
        given = {k: v for k, v in self.kwargs.items() if v is not None}
        return float(given.get("lr", lr)), float(given.get("weight_decay", weight_decay))


# Each algorithm's schema, for configs given as plain dicts (found by their hyperparameter sections).
OPTIMIZER_SCHEMAS: tuple[type[OptimizerConfig], ...] = (
    AdamWOptimizerConfig, MuonOptimizerConfig, ShampooOptimizerConfig, SoapOptimizerConfig, GenericOptimizerConfig,
)


def optimizer_schema_for(keys: set[str]) -> type[OptimizerConfig]:
    """The schema whose fields are exactly ``keys`` (a preset's resolved keys), else the closest fit."""
    base = {f.name for f in fields(OptimizerConfig)}
    extra = set(keys) - base
    for schema in OPTIMIZER_SCHEMAS:
        if {f.name for f in fields(schema)} - base == extra:
            return schema
    for schema in OPTIMIZER_SCHEMAS:
        if extra <= {f.name for f in fields(schema)}:
            return schema
    return OptimizerConfig


def optimizer_config(value: Any) -> OptimizerConfig:
    """An optimizer section (composed node, plain dict or instance) as its checked schema.

    A composed node carries its schema; a plain dict (a resolved config read back from a
    record, a test) is matched to the schema with exactly its sections.
    """
    if isinstance(value, OptimizerConfig):
        return as_config(type(value), value, "optimizer")
    if isinstance(value, DictConfig):
        node_type = OmegaConf.get_type(value)
        if isinstance(node_type, type) and issubclass(node_type, OptimizerConfig):
            return as_config(node_type, value, "optimizer")
    keys = set(value) if isinstance(value, Mapping) else set()
    return as_config(optimizer_schema_for(keys), value, "optimizer")
