"""Build the transformers causal LM for a model config (no hub access)."""

from __future__ import annotations

import functools
from typing import Any

import torch

from optlaw.models.loss import linear_cross_entropy
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

    The class is a thin subclass (``token_loss_class``) whose forward also takes ``targets``
    and then returns only the loss, computed without the full fp32 logits (optlaw.models.loss).

    Parameter names are transformers' own (model.embed_tokens, model.layers.N.self_attn.q_proj,
    ..., model.norm, lm_head): the optimizer router matches on them. Build under
    ``with torch.device("meta"):`` to count parameters of large presets without memory.
    """
    from transformers import LlamaForCausalLM, Olmo2ForCausalLM

    spec = model_spec(model_cfg)
    config = hf_config(spec)
    config._attn_implementation = "sdpa"
    cls = token_loss_class(LlamaForCausalLM if spec.family == "llama" else Olmo2ForCausalLM)
    return cls(config)


@functools.cache
def token_loss_class(base: type) -> type:
    """``base`` (a transformers causal LM) whose forward accepts ``targets=``.

    With targets, the loss comes straight from the last hidden states and the head weight
    (``linear_cross_entropy``), so the logits never exist in full; without, it is ``base``'s
    forward. A subclass, not a wrapper module, so parameter names (which the optimizer router
    and checkpoints use) stay transformers' own, and DDP/FSDP/compile wrap it as before.
    """
    from transformers.modeling_outputs import CausalLMOutputWithPast

    def forward(self, input_ids=None, targets=None, loss_reduction="mean", **kwargs):
        if targets is None:
            return base.forward(self, input_ids=input_ids, **kwargs)
        hidden = self.model(input_ids=input_ids, **kwargs).last_hidden_state
        loss = linear_cross_entropy(hidden, self.lm_head.weight, targets, impl=self.loss_impl,
                                    chunk_rows=self.loss_chunk_rows, reduction=loss_reduction)
        return CausalLMOutputWithPast(loss=loss)

    return type(base.__name__, (base,), {
        "forward": forward, "loss_impl": "auto", "loss_chunk_rows": 2048, "__module__": __name__,
        "__doc__": f"{base.__name__} with ``forward(input_ids, targets=...)`` returning the loss only.",
    })
