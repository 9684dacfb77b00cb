"""Reading a model config (Hydra node, plain dict or ModelConfig) into checked numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optlaw.config import as_config
from optlaw.config.model import ModelConfig



@dataclass(frozen=True)
class ModelSpec:
    family: str
    size: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_hidden: int
    vocab_size: int
    seq_len: int
    rope_theta: float
    rms_norm_eps: float
    init_std: float


def model_spec(model_cfg: Any) -> ModelSpec:
    """Checked model numbers from ``model_cfg`` (a ``model`` config node, a plain dict or a ModelConfig),
    with the derived values (n_kv_heads, head_dim, rms_norm_eps) filled in."""
    cfg = as_config(ModelConfig, model_cfg, "model")
    return ModelSpec(
        family=cfg.family.value,
        size=cfg.size,
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        n_kv_heads=cfg.kv_heads,
        head_dim=cfg.attention_head_dim,
        ffn_hidden=cfg.ffn_hidden,
        vocab_size=cfg.vocab_size,
        seq_len=cfg.seq_len,
        rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.norm_eps,
        init_std=cfg.init_std,
    )
