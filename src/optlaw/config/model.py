"""The ``model`` group: a decoder-only transformer's shape (presets: configs/model/<family>/<size>.yaml)."""

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from optlaw.config.core import Choice
from optlaw.errors import ConfigError


class Family(Choice):
    llama = "llama"
    olmo = "olmo"


# RMSNorm epsilon of each family's reference implementation (LLaMA: Touvron et al. 2023;
# OLMo-2: OLMo et al. 2024), used when model.rms_norm_eps is null.
FAMILY_RMS_NORM_EPS = {"llama": 1e-5, "olmo": 1e-6}


@dataclass
class ModelConfig:
    """A LLaMA- or OLMo-2-style causal LM, built with transformers (optlaw.models)."""

    family: Family = MISSING
    """llama: pre-norm RMSNorm, SwiGLU, RoPE, no biases, untied embeddings; olmo: OLMo-2 (RMSNorm after each sublayer, QK-norm)."""
    size: str = "custom"
    """Name of the size (the ladder's nominal N_non_embedding, e.g. 1m); part of the run label."""
    tier: Optional[str] = None
    """Ladder tier of a preset: tiny (facts-corpus vocabulary, 64-token context: the demo), cpu (synthetic-corpus vocabulary, short context) or real; informational."""
    nominal_params: Optional[int] = None
    """The ladder's nominal N_non_embedding for this size; informational."""
    n_layers: int = MISSING
    """Transformer blocks."""
    d_model: int = MISSING
    """Residual width; the optimizer's width scaling rules read it."""
    n_heads: int = MISSING
    """Attention (query) heads."""
    n_kv_heads: Optional[int] = None
    """Key/value heads (grouped-query attention); null = n_heads."""
    head_dim: Optional[int] = None
    """Width of one head; null = d_model / n_heads (the olmo family requires exactly that)."""
    ffn_hidden: int = MISSING
    """SwiGLU hidden width."""
    vocab_size: int = MISSING
    """Embedding rows; must hold every token id of the corpus."""
    seq_len: int = MISSING
    """Context length of training and evaluation sequences."""
    rope_theta: float = 10000.0
    """RoPE base frequency (10000: Su et al. 2021; the real-tier presets use 5e5 as OLMo-2)."""
    rms_norm_eps: Optional[float] = None
    """RMSNorm epsilon; null = the family's reference value (LLaMA 1e-5, OLMo-2 1e-6)."""
    init_std: float = 0.02
    """Std of the normal weight init (transformers' initializer_range; GPT-2/LLaMA use 0.02)."""

    def check(self) -> None:
        if self.n_heads <= 0 or self.d_model <= 0:
            raise ConfigError("model.n_heads and model.d_model must be positive integers")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}; change one or set model.head_dim"
            )
        if self.family == Family.olmo and self.head_dim is not None and self.head_dim * self.n_heads != self.d_model:
            # transformers' Olmo2 derives head_dim = d_model / n_heads and ignores a separate value.
            raise ConfigError(
                f"model.head_dim={self.head_dim} must equal model.d_model / model.n_heads = {self.d_model}/{self.n_heads} for the olmo family"
            )
        if self.n_heads % self.kv_heads:
            raise ConfigError(
                f"model.n_heads={self.n_heads} is not a multiple of model.n_kv_heads={self.kv_heads}; set n_kv_heads to a divisor of n_heads"
            )
        for key in ("n_layers", "ffn_hidden", "vocab_size", "seq_len"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be a positive integer")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def attention_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def norm_eps(self) -> float:
        return self.rms_norm_eps if self.rms_norm_eps is not None else FAMILY_RMS_NORM_EPS[self.family.value]
