"""Reading a model config (Hydra node or plain dict) into checked numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optlaw.errors import ConfigError

FAMILIES = ("llama", "olmo")


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


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def model_spec(model_cfg: Any) -> ModelSpec:
    """Checked model numbers from ``model_cfg`` (a ``model`` config node or a plain dict)."""
    required = ("family", "n_layers", "d_model", "n_heads", "ffn_hidden", "vocab_size", "seq_len")
    missing = [k for k in required if _get(model_cfg, k) is None]
    if missing:
        raise ConfigError(f"model config lacks {', '.join('model.' + k for k in missing)}; pick a preset (model=llama/1m) or set them")
    family = str(_get(model_cfg, "family"))
    if family not in FAMILIES:
        raise ConfigError(f"model.family={family!r} is unknown; choose one of: {', '.join(FAMILIES)}")
    d_model, n_heads = int(_get(model_cfg, "d_model")), int(_get(model_cfg, "n_heads"))
    n_kv_heads = int(_get(model_cfg, "n_kv_heads") or n_heads)
    head_dim = _get(model_cfg, "head_dim")
    if head_dim is None:
        if d_model % n_heads:
            raise ConfigError(f"model.d_model={d_model} is not divisible by model.n_heads={n_heads}; change one or set model.head_dim")
        head_dim = d_model // n_heads
    if family == "olmo" and int(head_dim) * n_heads != d_model:
        # transformers' Olmo2 derives head_dim = d_model / n_heads and ignores a separate value.
        raise ConfigError(f"model.head_dim={head_dim} must equal model.d_model / model.n_heads = {d_model}/{n_heads} for the olmo family")
    if n_heads % n_kv_heads:
        raise ConfigError(f"model.n_heads={n_heads} is not a multiple of model.n_kv_heads={n_kv_heads}; set n_kv_heads to a divisor of n_heads")
    ints = {k: int(_get(model_cfg, k)) for k in ("n_layers", "ffn_hidden", "vocab_size", "seq_len")}
    bad = [k for k, v in ints.items() if v <= 0]
    if bad or d_model <= 0 or n_heads <= 0:
        raise ConfigError(f"model.{(bad or ['d_model'])[0]} must be a positive integer")
    return ModelSpec(
        family=family,
        size=str(_get(model_cfg, "size", "custom")),
        n_layers=ints["n_layers"],
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=int(head_dim),
        ffn_hidden=ints["ffn_hidden"],
        vocab_size=ints["vocab_size"],
        seq_len=ints["seq_len"],
        rope_theta=float(_get(model_cfg, "rope_theta", 10000.0)),
        rms_norm_eps=float(_get(model_cfg, "rms_norm_eps", 1e-5 if family == "llama" else 1e-6)),
        init_std=float(_get(model_cfg, "init_std", 0.02)),
    )
