"""Sweep definitions (configs/sweep/<name>.yaml) and launchers (configs/launcher/<name>.yaml)."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from optlaw.config.core import Number
from optlaw.config.train import WSD_DECAY_FRACTION
from optlaw.config.tuning import TuneBudget, TuningConfig, TuningScope
from optlaw.errors import ConfigError


@dataclass
class BranchingConfig:
    """Budget branching: one WSD run per (model, optimizer, hyperparameters, seed) that branches at every token budget (docs/sweeps.md)."""

    enabled: bool = False
    """Train the longest budget once and branch the shorter ones off its checkpoints."""
    decay_fraction: float = WSD_DECAY_FRACTION
    """Of each budget: the lr decays over its last fraction (schedule.decay_fraction of every point)."""
    warmup_tokens: Optional[Number] = None
    """Absolute warmup, equal for every budget (schedule.warmup_tokens of every point); required when enabled."""


@dataclass
class SweepConfig:
    """A grid: every list is an axis, the grid is their product. null = not an axis (the train config's value is used); an empty list is an error (an empty grid)."""

    name: str = MISSING
    """The sweep's name: the default sweep_dir (sweeps/<name>) and the W&B group."""
    task: str = "llm"
    """llm, or a proxy task (random_features, quadratic) whose points take their axes as plain keys."""
    models: Optional[List[str]] = None
    """Axis model=<value>: configs under configs/model/ (e.g. llama/1m)."""
    optimizers: Optional[List[str]] = None
    """Axis optimizer=<value>: configs under configs/optimizer/."""
    seeds: Optional[List[int]] = None
    """Axis seed=<value>."""
    tokens_per_param: Optional[List[Number]] = None
    """Axis budget.tokens_per_param=<value> (D = ratio x N); use this or tokens."""
    tokens: Optional[List[Number]] = None
    """Axis budget.tokens=<value> (absolute budgets); use this or tokens_per_param."""
    tokens_per_param_range: Optional[List[Number]] = None
    """[lo, hi]: keep only the points whose tokens / N_non_embedding lies in this band (a diagonal of a models x tokens grid); null = every point."""
    extra_axes: Dict[str, Any] = field(default_factory=dict)
    """Any other key -> list of values, e.g. {batch.global_tokens: [8192, 16384]}."""
    optimizer_axes: Dict[str, Any] = field(default_factory=dict)
    """Per optimizer: key -> list of values, e.g. {adamw: {optimizer.lr_mult: [0.5, 1, 2]}}."""
    fixed: Dict[str, Any] = field(default_factory=dict)
    """Key -> value applied to every point."""
    branching: BranchingConfig = field(default_factory=BranchingConfig)
    """Budget branching."""
    tuning: TuningConfig = field(default_factory=TuningConfig)
    """Hyperparameter tuning in rounds (docs/sweeps.md, "Tuning")."""
    cli_overrides: List[str] = field(default_factory=list)
    """Set by `optlaw sweep`: the train overrides given on its command line, added to every point (kept in the manifest's definition, so a sweep dir refuses a different set)."""

    def check(self) -> None:
        if self.tokens_per_param is not None and self.tokens is not None:
            raise ConfigError(
                f"sweep {self.name}: both 'tokens_per_param' and 'tokens' are axes; keep one and set the other to null"
            )
        for axis in ("models", "optimizers", "seeds", "tokens_per_param", "tokens"):
            if getattr(self, axis) == []:
                raise ConfigError(
                    f"sweep {self.name}: axis '{axis}' is an empty list, so the grid is empty; give it values or set it to null"
                )
        band = self.tokens_per_param_range
        if band is not None and (len(band) != 2 or not 0 <= band[0] <= band[1]):
            raise ConfigError(
                f"sweep {self.name}: tokens_per_param_range must be [lo, hi] with 0 <= lo <= hi, got {list(band)}"
            )
        for key, values in self.extra_axes.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep {self.name}: extra_axes.{key} must be a non-empty list of values")
        unknown = set(self.optimizer_axes) - set(self.optimizers or [])
        if unknown:
            raise ConfigError(
                f"sweep {self.name}: optimizer_axes names {sorted(unknown)}, which are not in 'optimizers'; "
                "add them to optimizers or remove their entry"
            )
        for optimizer, axes in self.optimizer_axes.items():
            for key, values in (axes or {}).items():
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"sweep {self.name}: optimizer_axes.{optimizer}.{key} must be a non-empty list")
        if self.branching.enabled and self.branching.warmup_tokens is None:
            raise ConfigError(
                f"sweep {self.name}: branching needs branching.warmup_tokens (an absolute warmup, "
                "the same for every budget), e.g. sweep.branching.warmup_tokens=0"
            )
        if self.tuning.enabled:
            self._check_tuning()

    def _check_tuning(self) -> None:
        """Rules between the tuning block and the grid (the block's own rules: TuningConfig.check)."""
        tuning, name = self.tuning, self.name
        if self.task != "llm":
            raise ConfigError(f"sweep {name}: tuning works on LLM sweeps (task: llm); proxy points search their "
                              "step size themselves (step_size_multipliers)")
        axis_keys = {"model", "optimizer", "seed", "budget.tokens", "budget.tokens_per_param", *self.extra_axes}
        for axes in self.optimizer_axes.values():
            axis_keys |= set(axes or {})
        for row in tuning.hyperparameters:
            if row.key in axis_keys or row.key.split(".")[0] in ("model", "budget", "data"):
                raise ConfigError(f"sweep {name}: tuning key {row.key} is also a grid axis or names a model, budget "
                                  "or data key; tune it or sweep it, not both")
            unknown = set(row.optimizers or []) - set(self.optimizers or [])
            if unknown:
                raise ConfigError(f"sweep {name}: tuning key {row.key} names optimizers {sorted(unknown)} that are "
                                  "not in 'optimizers'; add them there or drop them from its optimizers list")
        budgets = self.tokens if self.tokens is not None else self.tokens_per_param
        if tuning.scope == TuningScope.per_size and self.branching.enabled and tuning.tune_budget != TuneBudget.largest:
            raise ConfigError(f"sweep {name}: with budget branching the tuned budget is the WSD trunk; "
                              "set tuning.tune_budget: largest")
        if tuning.scope == TuningScope.per_size and not budgets:
            raise ConfigError(f"sweep {name}: tuning.scope=per_size reuses winners across budgets, but the sweep has "
                              "no budget axis (tokens or tokens_per_param); use scope: every_cell")
        if tuning.scope == TuningScope.transfer:
            models = list(self.models or [])
            tuned = list(tuning.tune_models or [])
            missing = [m for m in tuned if m not in models]
            if missing:
                raise ConfigError(f"sweep {name}: tuning.tune_models names {missing}, which are not in 'models'")
            if len(set(tuned)) < 2:
                raise ConfigError(f"sweep {name}: tuning.scope=transfer fits a law in N, so it tunes at least two "
                                  "sizes; list two or more in tuning.tune_models")
            if len(set(tuned)) == len(set(models)):
                raise ConfigError(f"sweep {name}: tuning.tune_models lists every model, so nothing is predicted; "
                                  "use scope: every_cell, or leave the larger sizes out of tune_models")


@dataclass
class LauncherConfig:
    """What every launcher has."""

    name: str = MISSING
    """local or slurm."""
    throughput_flops_per_s: float = MISSING
    """Throughput assumed for the plan's time estimate only."""


@dataclass
class LocalLauncherConfig(LauncherConfig):
    """Run grid points on this machine, in child processes (a crash or OOM in one point cannot take the others, or the launcher, down)."""

    name: str = "local"
    max_parallel: int = 1
    """Points at a time."""
    in_process: bool = True
    """Train points in max_parallel worker processes that import torch and optlaw once and run point after point (a failing point is caught; a worker that dies is replaced and its point resumed); false = a fresh `optlaw train` process per point."""
    throughput_flops_per_s: Optional[float] = None
    """Training FLOP/s for the plan's hours. null: measured on this machine (the points train here) by a few fwd+bwd+AdamW steps of llama/1m at torch's thread count, cached per machine, torch build and threads (optlaw.sweep.throughput); a number overrides it."""

    def check(self) -> None:
        if self.max_parallel < 1:
            raise ConfigError(f"launcher.max_parallel={self.max_parallel} must be >= 1")


@dataclass
class ResourceRow:
    """SLURM resources for models up to max_params non-embedding parameters."""

    max_params: Optional[float] = None
    """Largest N (non-embedding) this row covers; null = no upper bound."""
    gpus_per_node: int = 0
    """GPUs per node; more than 1 runs the point under torchrun."""
    cpus_per_task: int = 1
    """CPUs per job (per node)."""
    mem_gb: Optional[int] = None
    """Memory per node in GB; null = the partition's default."""
    nodes: int = 1
    """Nodes per point; more than 1 launches srun + torchrun with a rendezvous over the allocated nodes."""
    time_min: Optional[int] = None
    """Fixed time limit in minutes for this class; null = per point from its planned FLOPs (launcher.time_margin). A point out of time checkpoints, requeues and resumes."""

    def check(self) -> None:
        if (self.time_min is not None and self.time_min < 1) or self.cpus_per_task < 1 or self.gpus_per_node < 0 \
                or self.nodes < 1:
            raise ConfigError(
                f"launcher.resources row {self}: time_min (or null), cpus_per_task and nodes must be >= 1, gpus_per_node >= 0"
            )


def _gpu_resources() -> list[ResourceRow]:
    # Time limits come from each point's FLOPs (SlurmLauncherConfig.time_margin); tune the rows for your cluster.
    return [
        ResourceRow(max_params=2.0e7, gpus_per_node=1, cpus_per_task=8, mem_gb=32),
        ResourceRow(max_params=2.0e8, gpus_per_node=1, cpus_per_task=8, mem_gb=64),
        ResourceRow(max_params=1.0e9, gpus_per_node=4, cpus_per_task=32, mem_gb=256),
        ResourceRow(max_params=None, gpus_per_node=8, cpus_per_task=64, mem_gb=480),
    ]


@dataclass
class SlurmLauncherConfig(LauncherConfig):
    """Submit grid points as one SLURM job array per launch and resource class, through submitit."""

    name: str = "slurm"
    partition: Optional[str] = None
    """null = the cluster's default partition."""
    account: Optional[str] = None
    """sbatch --account."""
    qos: Optional[str] = None
    """sbatch --qos."""
    array_parallelism: int = 64
    """At most this many points run at once (sbatch --array=...%N)."""
    signal_delay_s: int = 120
    """SLURM signals the job (USR1, which the trainer checkpoints on) this long before its time limit; the point checkpoints and requeues."""
    max_requeues: int = 20
    """Preemptions/timeouts a point may survive (submitit's max_num_timeout)."""
    setup: List[str] = field(default_factory=list)
    """Shell lines run before each job, e.g. ["module load cuda/12.4"]."""
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    """Any other sbatch option, e.g. {constraint: a100}."""
    folder: Optional[str] = None
    """submitit logs; null = <sweep_dir>/slurm_logs."""
    python: Optional[str] = None
    """Interpreter on the compute nodes; null = this one (shared filesystem)."""
    resources: List[ResourceRow] = field(default_factory=_gpu_resources)
    """Resources by model size: the first row whose max_params >= the point's N is used."""
    throughput_flops_per_s: float = 1.25e14
    """Per GPU (per job on CPU), for the plan and the time limits: A100 bf16 dense peak 312e12 FLOP/s (NVIDIA A100 datasheet) at ~40% MFU."""
    time_margin: float = 2.0
    """Time limit of a point = planned FLOPs / (throughput_flops_per_s x GPUs) x time_margin, rounded up to 5, 10, 15, 20, 30, 45, 60, 90 ... minutes."""
    max_time_min: Optional[int] = None
    """Cap on every time limit; null = the partition's limit as sinfo reports it (none when unlimited)."""
    pack_minutes: Optional[float] = None
    """Points whose estimated time is under this share jobs of up to this many minutes, run one after another in one worker process; null = one job per point."""

    def check(self) -> None:
        if not self.resources:
            raise ConfigError(
                "launcher.resources is empty; give at least one row {max_params, gpus_per_node, cpus_per_task, mem_gb, time_min}"
            )
        for key in ("array_parallelism", "signal_delay_s"):
            if getattr(self, key) < 1:
                raise ConfigError(f"launcher.{key}={getattr(self, key)} must be >= 1")
        if self.max_requeues < 0:
            raise ConfigError(f"launcher.max_requeues={self.max_requeues} must be >= 0")
        if self.time_margin <= 0 or self.throughput_flops_per_s <= 0:
            raise ConfigError("launcher.time_margin and launcher.throughput_flops_per_s must be > 0")
        if self.pack_minutes is not None and self.pack_minutes <= 0:
            raise ConfigError(f"launcher.pack_minutes={self.pack_minutes} must be > 0, or null for one job per point")
