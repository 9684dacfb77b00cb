"""Build the transformers causal LM for a model config (no hub access)."""

from __future__ import annotations

from typing import Any

import torch

from optlaw.models.spec import ModelSpec, model_spec


def hf_config(spec: ModelSpec):
    """The transformers config object for a spec (LlamaConfig or Olmo2Config)."""
    from transformers import LlamaConfig, Olmo2Config

    common = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.ffn_hidden,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.head_dim,
        hidden_act="silu",
        max_position_embeddings=spec.seq_len,
        initializer_range=spec.init_std,
        rms_norm_eps=spec.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        tie_word_embeddings=False,
        attention_bias=False,
        attention_dropout=0.0,
        use_cache=False,  # training only; a KV cache would just cost memory
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    )
    if spec.family == "llama":
        return LlamaConfig(mlp_bias=False, **common)
    common.pop("head_dim")  # Olmo2Config derives head_dim = hidden_size / num_attention_heads
    return Olmo2Config(**common)


def build_model(model_cfg: Any) -> torch.nn.Module:
    """A freshly initialised LlamaForCausalLM / Olmo2ForCausalLM with SDPA attention.

    Parameter names are transformers' own (model.embed_tokens, model.layers.N.self_attn.q_proj,
    ..., model.norm, lm_head): the optimizer router matches on them. Build under
    ``with torch.device("meta"):`` to count parameters of large presets without memory.
    """
    from transformers import LlamaForCausalLM, Olmo2ForCausalLM

    spec = model_spec(model_cfg)
    config = hf_config(spec)
    config._attn_implementation = "sdpa"
    cls = LlamaForCausalLM if spec.family == "llama" else Olmo2ForCausalLM
    return cls(config)
