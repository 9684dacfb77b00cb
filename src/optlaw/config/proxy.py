"""Proxy tasks: one grid point (configs/task_<task>.yaml) and the two studies (configs/proxy/<study>.yaml).

docs/proxy.md explains the models. The optimizer keys (gd, diag, kron, sign, ngd) and the
spectrum's validity range are the proxy stage's own checks (optlaw.proxy); the rules here
need nothing but the numbers.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import MISSING

from optlaw.config.train import WandbConfig
from optlaw.config.tuning import TuningSourceConfig
from optlaw.errors import ConfigError

PROXY_OPTIMIZERS = ["gd", "diag", "kron", "sign", "ngd"]
STEP_SIZE_MULTIPLIERS = [0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 1.95]


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer")


def _check_dim(key: str, dim: int, N: int) -> None:
    _positive(key, dim)
    if dim < N:
        raise ConfigError(f"N={N} exceeds {key}={dim}; raise {key}")


def _check_multipliers(mults: List[float]) -> None:
    if not mults or any(m <= 0 for m in mults):
        raise ConfigError("step_size_multipliers must be a non-empty list of positive numbers, e.g. [0.5,1.0,1.9]")


@dataclass
class ProxyPointConfig:
    """One proxy grid point; its record has the LLM record's shape (N = model size axis, D = optimizer steps)."""

    task: str = MISSING
    """The proxy task: random_features or quadratic (each has its root config, configs/task_<task>.yaml)."""
    seed: int = 0
    """Part of the run id."""
    run_dir: Optional[str] = None
    """Run directory; null = runs/<run id>."""
    sweep_name: Optional[str] = None
    """Set by `optlaw sweep`; the record's `sweep`."""
    tuning: TuningSourceConfig = field(default_factory=TuningSourceConfig)
    """Where the hyperparameters came from (the record's `tuning`; proxy points search their step size, so fixed); not part of the run id."""
    progress: bool = False
    """Progress output (a point takes about a second)."""
    proxy_optimizer: str = "gd"
    """gd | diag | kron | sign | ngd (rules: docs/proxy.md); not `optimizer`, the LLM optimizer config group."""
    N: int = 256
    """Model size axis (N, N_total, N_non_embedding in the record)."""
    steps: int = MISSING
    """Optimizer steps = the D axis (D, tokens_trained in the record)."""
    s: float = MISSING
    """Spectrum exponent: lambda_k = k^-s."""
    source_r: float = MISSING
    """Source condition: target energy lambda_k b_k^2 ~ k^-(1 + 2 r s)."""
    damping: float = MISSING
    """Relative to the top curvature eigenvalue: (H + damping x mu_max)^-q; 0 = undamped."""
    step_size_multipliers: List[float] = field(default_factory=lambda: list(STEP_SIZE_MULTIPLIERS))
    """Step sizes searched, eta = m / top effective curvature (GD is stable for m < 2); the best final loss is kept."""
    timing_repeats: int = MISSING
    """Steps timed per optimizer to measure step_cost_ratio."""
    wandb: WandbConfig = field(default_factory=lambda: WandbConfig(job_type="proxy"))
    """Kept for the shared record/sweep shape; proxy points do not log to W&B."""

    def check(self) -> None:
        for key in ("N", "steps", "timing_repeats"):
            _positive(key, getattr(self, key))
        if not self.damping >= 0 or self.damping == float("inf"):
            raise ConfigError(f"damping={self.damping!r} must be a finite number >= 0 (relative to the top eigenvalue)")
        _check_multipliers(self.step_size_multipliers)


@dataclass
class QuadraticPointConfig(ProxyPointConfig):
    """Convex quadratic L = E + 1/2 sum_k k^-s (theta_k - theta*_k)^2 on N trainable coordinates for D steps (arXiv 2602.07712 setup); the loss parts are exact."""

    task: str = "quadratic"
    """This root config is composed for `optlaw train task=quadratic`."""
    steps: int = 256
    s: float = 1.5
    source_r: float = 0.25
    """Target energy lambda_k theta*_k^2 ~ k^-(1 + 2 r s): alpha = 2 r s, beta_gd = 2 r."""
    feature_dim: int = 65536
    """M, stands in for the infinite feature space; keep >> the largest N."""
    irreducible_loss: float = 0.0
    """E, the loss floor."""
    damping: float = 0.0
    """Relative to the top eigenvalue; 0 = undamped (ngd then converges in one step)."""
    timing_repeats: int = 200

    def check(self) -> None:
        super().check()
        _check_dim("feature_dim", self.feature_dim, self.N)


@dataclass
class RandomFeaturesPointConfig(ProxyPointConfig):
    """Power-law random-feature regression with the population loss (arXiv 2605.29387 setup). The defaults are the setting in which optlaw reproduces the paper's alpha pattern (docs/proxy.md, "Setting")."""

    task: str = "random_features"
    """This root config is composed for `optlaw train task=random_features`."""
    steps: int = 10
    s: float = 1.0
    source_r: float = 0.1
    input_dim: int = 4096
    """v, dimension of the inputs; keep >= 4x the largest N."""
    n_samples: Optional[int] = None
    """null: train on the population loss; an integer: train on n samples, evaluate on the population."""
    noise_variance: float = 0.0
    """Label noise; the irreducible loss is noise_variance / 2."""
    damping: float = 0.01
    timing_repeats: int = 20

    def check(self) -> None:
        super().check()
        _check_dim("input_dim", self.input_dim, self.N)
        if self.n_samples is not None and self.n_samples < 1:
            raise ConfigError(f"n_samples={self.n_samples!r} must be a positive integer, or null for the population loss")


POINT_SCHEMAS: dict[str, type[ProxyPointConfig]] = {
    "random_features": RandomFeaturesPointConfig, "quadratic": QuadraticPointConfig,
}


@dataclass
class RegimeConfig:
    """One damping regime of the quadratic study."""

    name: str = MISSING
    """Folder name of the regime's records (runs/<name>/)."""
    damping: float = MISSING
    """Relative to the top eigenvalue."""


@dataclass
class QuadraticStudyConfig:
    """The (N, D) study on the convex quadratic (`optlaw proxy` quadratic; arXiv 2602.07712 setup). Every point is a run record under <out>/runs/<regime>/, fitted by optlaw.fit."""

    optimizers: List[str] = field(default_factory=lambda: list(PROXY_OPTIMIZERS))
    """Proxy optimizer keys to run (rules: docs/proxy.md)."""
    s: float = 1.5
    """Spectrum lambda_k = k^-s."""
    source_r: float = 0.25
    """Target energy ~ k^-(1 + 2 r s): predicted alpha = 2 r s = 0.75, beta_gd = 2 r = 0.5."""
    feature_dim: int = 1048576
    """Stands in for infinity; the tail beyond it would change A(N=4096) by ~1.5%."""
    irreducible_loss: float = 0.1
    """E, so the fit has a floor to find."""
    N_values: List[int] = field(default_factory=lambda: [16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
    """Model sizes (trainable coordinates); at least 3."""
    D_values: List[int] = field(default_factory=lambda: [4, 16, 64, 256, 1024, 4096, 16384, 65536])
    """Steps; to 2^16 so GD's learning frontier (2 m D)^(1/s) reaches the largest N; at least 3."""
    regimes: List[RegimeConfig] = field(default_factory=lambda: [
        RegimeConfig(name="undamped", damping=0.0),  # preconditioners change the D exponent
        RegimeConfig(name="damped", damping=0.1),    # below the damping every optimizer is rescaled GD
    ])
    """Damping regimes {name, damping}: undamped preconditioners change the D exponent; below the damping every optimizer is rescaled GD (shared exponents)."""
    step_size_multipliers: List[float] = field(default_factory=lambda: list(STEP_SIZE_MULTIPLIERS))
    """eta = m / top effective curvature; the best final loss is kept."""
    timing_repeats: int = 50
    """Steps timed per optimizer for step_cost_ratio."""
    reference: str = "gd"
    """Reference optimizer of the shared-exponent law; one of optimizers."""
    bootstrap: int = 200
    """Cell bootstrap replicates of the fits (0 = none)."""
    additive_refit_min_steps: int = 256
    """The refit where the additive law holds uses D >= this (long horizon: the learning frontier below the damping scale); fewer than 3 such D skip it."""
    progress: bool = True
    """One line per finished (regime, optimizer) on stderr."""

    def check(self) -> None:
        if self.reference not in self.optimizers:
            raise ConfigError(f"reference={self.reference!r} must be one of optimizers {list(self.optimizers)}")
        if len(self.N_values) < 3 or len(self.D_values) < 3:
            raise ConfigError("N_values and D_values need at least 3 values each for a Chinchilla fit")
        if not self.regimes:
            raise ConfigError("regimes must list at least one {name, damping}")
        _positive("additive_refit_min_steps", self.additive_refit_min_steps)
        _check_multipliers(self.step_size_multipliers)


@dataclass
class SensitivityConfig:
    """Variants of the random-feature setting, each changing one knob; [] skips a knob."""

    seeds: List[int] = field(default_factory=lambda: [0])
    """Seeds of every sensitivity variant."""
    optimizers: List[str] = field(default_factory=lambda: ["gd", "kron", "sign", "ngd"])
    """Optimizers of every sensitivity variant."""
    steps: List[int] = field(default_factory=lambda: [3, 12, 24])
    """One variant per value, the other knobs as in the setting."""
    damping: List[float] = field(default_factory=lambda: [0.0, 0.0001, 0.01])
    """One variant per value."""
    source_r: List[float] = field(default_factory=lambda: [0.1, 0.15])
    """One variant per value."""
    input_dim: List[int] = field(default_factory=lambda: [8192])
    """One variant per value."""
    n_samples: List[Optional[int]] = field(default_factory=lambda: [1024, 4096])
    """One variant per value (trained on n samples)."""


@dataclass
class PaperConfig:
    """Values quoted in issue 6 from arXiv 2605.29387 (not re-derived here), drawn on the alpha-vs-s plot."""

    s: float = 1.0
    """Spectral exponent the quoted values refer to."""
    alpha: Dict[str, float] = field(default_factory=lambda: {"gd": 0.12, "ngd": 0.31})
    """alpha per optimizer at that s."""


@dataclass
class RandomFeaturesStudyConfig:
    """The alpha-vs-spectrum study (`optlaw proxy` random_features; arXiv 2605.29387 setup). The setting (steps, damping, source_r) reproduces the paper's pattern; it was found by the sensitivity scan (docs/proxy.md)."""

    optimizers: List[str] = field(default_factory=lambda: list(PROXY_OPTIMIZERS))
    """Proxy optimizer keys to run; must include gd (shifts are against it)."""
    s_values: List[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 2.0])
    """Input spectrum exponents (issue 6)."""
    N_values: List[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024])
    """Random features (model sizes), nested per seed; at least 3."""
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2, 3])
    """Feature draws; intervals bootstrap over them."""
    steps: int = 6
    """Fixed optimizer-step budget (optimizers differ only before convergence)."""
    damping: float = 0.001
    """Relative to the top curvature eigenvalue."""
    source_r: float = 0.05
    """Target energy ~ k^-(1 + 2 r s)."""
    input_dim: int = 4096
    """v; 4x the largest N."""
    n_samples: Optional[int] = None
    """null: train on the population loss; an integer: train on n samples, evaluate on the population."""
    noise_variance: float = 0.0
    """Irreducible loss = noise_variance / 2, subtracted exactly before the alpha fit."""
    step_size_multipliers: List[float] = field(default_factory=lambda: list(STEP_SIZE_MULTIPLIERS))
    """eta = m / top effective curvature."""
    bootstrap_samples: int = 1000
    """Paired bootstrap resamples of the seeds."""
    interval_level: float = 0.95
    """Coverage of the alpha and shift intervals."""
    workers: int = 2
    """Processes, one BLAS thread each."""
    progress: bool = True
    """One line per finished task on stderr."""
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    """One-knob variants of the setting."""
    paper: PaperConfig = field(default_factory=PaperConfig)
    """Quoted values to compare with."""

    def check(self) -> None:
        if "gd" not in self.optimizers:
            raise ConfigError("optimizers must include gd: shifts are measured against it")
        if len(self.N_values) < 3 or min(self.N_values) < 1:
            raise ConfigError("N_values needs at least 3 positive model sizes for an alpha fit")
        if max(self.N_values) > self.input_dim:
            raise ConfigError(f"largest N ({max(self.N_values)}) exceeds input_dim ({self.input_dim}); raise input_dim")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed (several give intervals)")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers} must be >= 1")
