"""The root config of one LLM grid point (``optlaw train``; configs/train.yaml) and its sections."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import MISSING

from optlaw.config.core import Choice, Number
from optlaw.config.data import DataConfig
from optlaw.config.model import ModelConfig
from optlaw.config.optim import OptimizerConfig
from optlaw.errors import ConfigError

# WSD decays over the last 20% of steps (Hagele et al. 2024, "Scaling Laws and Compute-Optimal
# Training Beyond Fixed Training Durations"); budget branching uses the same default.
WSD_DECAY_FRACTION = 0.2


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(Choice):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class ParamBasis(Choice):
    non_embedding = "non_embedding"
    total = "total"


class ScheduleName(Choice):
    cosine = "cosine"
    linear = "linear"
    wsd = "wsd"
    constant = "constant"


class WandbMode(Choice):
    online = "online"
    offline = "offline"
    disabled = "disabled"


def exactly_one_budget_error(both: bool) -> ConfigError:
    return ConfigError(
        "set exactly one of budget.tokens (absolute, e.g. budget.tokens=2000000) and "
        "budget.tokens_per_param (e.g. budget.tokens_per_param=20)" + ("; both are set" if both else "; neither is set")
    )


@dataclass
class BudgetConfig:
    """The token budget D: exactly one of tokens and tokens_per_param (optlaw.train.budget)."""

    tokens_per_param: Optional[Number] = None
    """D = tokens_per_param x N (N on param_basis)."""
    tokens: Optional[Number] = None
    """Absolute token budget D."""
    param_basis: ParamBasis = ParamBasis.non_embedding
    """Which N tokens_per_param refers to: non_embedding or total (recorded as param_basis)."""

    def check(self) -> None:
        if self.tokens is not None and self.tokens_per_param is not None:
            raise exactly_one_budget_error(both=True)
        if self.tokens is not None and self.tokens <= 0:
            raise ConfigError(f"budget.tokens={self.tokens} must be positive")
        if self.tokens_per_param is not None and self.tokens_per_param <= 0:
            raise ConfigError(f"budget.tokens_per_param={self.tokens_per_param} must be positive")


@dataclass
class BatchConfig:
    """Tokens per optimizer step and how they are split into forward passes."""

    global_tokens: int = 4096
    """Tokens per optimizer step, over all ranks. 4096 = 32 sequences of 128: on llama/1m at ~2M tokens the run is step-limited, and halving the batch from 8192 learned faster per token (measured here: train loss 5.45 after 123k tokens vs 5.58 after 164k with 8192)."""
    micro_batch_size: int = 16
    """Sequences per forward pass per rank; accumulation = global_tokens / (micro_batch_size x seq_len x ranks)."""

    def check(self) -> None:
        if self.global_tokens <= 0 or self.micro_batch_size <= 0:
            raise ConfigError("batch.global_tokens and batch.micro_batch_size must be positive")


@dataclass
class ScheduleConfig:
    """The learning-rate schedule, a factor of each group's peak lr (optlaw.train.schedule)."""

    name: ScheduleName = ScheduleName.cosine
    """cosine | linear | wsd (warmup-stable-decay) | constant."""
    warmup_fraction: float = 0.05
    """Warmup as a fraction of the run's steps (5%: a common choice, e.g. Porian et al. 2024)."""
    warmup_tokens: Optional[Number] = None
    """Absolute warmup in tokens; when set it wins over warmup_fraction (budget branching needs it)."""
    min_lr_ratio: float = 0.1
    """Floor as a fraction of the peak lr (Chinchilla decays cosine to 10%, Hoffmann et al. 2022)."""
    decay_fraction: float = WSD_DECAY_FRACTION
    """wsd only: the last fraction of the steps decays linearly to the floor (Hagele et al. 2024)."""

    def check(self) -> None:
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"schedule.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.warmup_tokens is None and not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"schedule.warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        if self.name == ScheduleName.wsd and not 0.0 < self.decay_fraction <= 1.0:
            raise ConfigError(f"schedule.decay_fraction={self.decay_fraction} must be in (0, 1]")


@dataclass
class EvalConfig:
    """Validation on the fixed held-out split, the same for every run."""

    fractions: List[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    """Token fractions after which to evaluate, each in (0, 1]; the end is always evaluated."""
    at_start: bool = False
    """Also evaluate the initial model (step 0)."""
    tokens: int = 131072
    """Validation tokens per evaluation."""
    micro_batch_size: Optional[int] = None
    """Sequences per validation forward pass; null = batch.micro_batch_size."""

    def check(self) -> None:
        for fraction in self.fractions:
            if not 0.0 < fraction <= 1.0:
                raise ConfigError(f"eval.fractions contains {fraction}; every fraction must be in (0, 1]")


@dataclass
class TrainLoopConfig:
    """The update itself."""

    grad_clip: float = 1.0
    """Max global gradient norm; 0 = no clipping (the norm is still logged)."""


@dataclass
class DivergenceConfig:
    """When a run counts as diverged (checked only after warmup; a non-finite loss always diverges)."""

    max_loss_ratio: float = 3.0
    """Diverged when train loss > ratio x its running minimum; 3x is far outside step-to-step noise. 0 = no ratio rule."""


@dataclass
class LogConfig:
    """Metrics output."""

    every_steps: int = 10
    """A metrics.jsonl line (and W&B log, progress line) every this many steps."""


@dataclass
class CheckpointConfig:
    """Checkpoints under <run_dir>/checkpoints/ (optlaw.train.checkpoint)."""

    every_steps: int = 200
    """Also written at the end, on SIGTERM / SIGUSR1 (then exit status 75) and Ctrl-C (exit 130); 0 = only then."""
    keep: int = 1
    """Newest rotating checkpoints kept (step_<n>.pt); at least 1."""
    keep_at_tokens: List[Number] = field(default_factory=list)
    """Also keep tokens_<n>.pt after the first step reaching each count (budget branching)."""


@dataclass
class InitConfig:
    """Where the weights start."""

    from_checkpoint: Optional[str] = None
    """Start from another run's checkpoint (budget branching). Not part of the run id: the trainer refuses a parent whose config or lr schedule differs up to the branch step, so a branch is the same computation as the plain run."""


@dataclass
class StepCostConfig:
    """The step-cost measurement at the end of a run (step_cost_ratio in the record)."""

    repeats: int = 5
    """Optimizer steps timed, interleaved with AdamW steps on the same gradients; 0 = skip."""


@dataclass
class HardwareConfig:
    """Facts about accelerators, for MFU on CUDA."""

    peak_bf16_tflops: Dict[str, float] = field(default_factory=lambda: {
        "H100 SXM": 989.0,   # NVIDIA H100 datasheet
        "H100 PCIe": 756.0,
        "H100": 989.0,
        "H200": 989.0,
        "A100": 312.0,       # NVIDIA A100 datasheet
        "L40S": 362.0,
        "L4": 121.0,
        "A10G": 70.0,        # AWS: A10G ~ 70 dense bf16
        "A10": 125.0,
        "RTX 4090": 165.0,
        "RTX 3090": 71.0,
        "V100": 125.0,       # no bf16; fp16 tensor-core peak as a stand-in
    })
    """Dense bf16 peak TFLOP/s by device-name substring (vendor datasheets, no sparsity); the longest match wins."""


@dataclass
class WandbConfig:
    """Mirror of the metrics to Weights & Biases (the W&B run id is the run id)."""

    mode: WandbMode = WandbMode.disabled
    """online | offline | disabled."""
    project: str = "optlaw"
    """W&B project."""
    entity: Optional[str] = None
    """W&B entity (team); null = your default."""
    job_type: str = "train"
    """W&B job type."""
    tags: List[str] = field(default_factory=list)
    """Extra tags; family, size, optimizer and budget are always added."""


@dataclass
class TrainConfig:
    """One LLM grid point: model x optimizer x data x token budget. Override any key as key=value."""

    model: ModelConfig = MISSING
    """The model, chosen as model=<family>/<size> (configs/model/)."""
    optimizer: OptimizerConfig = MISSING
    """The optimizer, chosen as optimizer=<name> (configs/optimizer/)."""
    data: DataConfig = MISSING
    """The corpus, chosen as data=<name> (configs/data/)."""
    task: str = "llm"
    """llm here; proxy tasks have their own root configs (task_<t>)."""
    seed: int = 0
    """Model init and data order; part of the run id."""
    run_dir: Optional[str] = None
    """Run directory; null = runs/<run id>. Rerunning the same command resumes from its checkpoint."""
    device: Device = Device.auto
    """auto (cuda when visible, else cpu) | cpu | cuda."""
    precision: Precision = Precision.auto
    """auto (fp32 on CPU, bf16 autocast on CUDA) | fp32 | bf16."""
    cpu_threads: Optional[int] = None
    """torch intra-op threads on CPU; null = torch's default (all cores). 1 on a shared, oversubscribed machine."""
    compile: bool = False
    """torch.compile the model (CUDA only; ignored with a note on CPU)."""
    sweep_name: Optional[str] = None
    """Set by `optlaw sweep`: the W&B group and the record's `sweep`."""
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    """Token budget."""
    batch: BatchConfig = field(default_factory=BatchConfig)
    """Batch."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    """The update."""
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    """Divergence rule."""
    log: LogConfig = field(default_factory=LogConfig)
    """Logging."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""
    progress: bool = True
    """A progress line on stderr at every log step."""
    init: InitConfig = field(default_factory=InitConfig)
    """Initial weights."""
    step_cost: StepCostConfig = field(default_factory=StepCostConfig)
    """Step-cost measurement."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """Accelerator facts."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases."""

    def check(self) -> None:
        if self.task != "llm":
            raise ConfigError(f"task={self.task!r} in the llm root config; proxy tasks use their own (optlaw train task={self.task})")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"cpu_threads={self.cpu_threads} must be >= 1, or null for torch's default")
        if self.budget.tokens is None and self.budget.tokens_per_param is None:
            raise exactly_one_budget_error(both=False)
