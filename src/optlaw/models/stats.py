"""Analytic parameter counts and training FLOPs per token for a model config."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from optlaw.models.spec import model_spec


@dataclass(frozen=True)
class ModelStats:
    family: str
    size: str
    n_layers: int
    d_model: int
    n_heads: int
    head_dim: int
    ffn_hidden: int
    vocab_size: int
    seq_len: int
    n_total: int
    n_non_embedding: int  # everything but the input embedding and the untied head
    n_embedding: int  # input embedding + untied output head
    n_matmul: int  # weights that multiply activations: attention, MLP and the head
    flops_per_token: int  # training (forward + backward) FLOPs per token, see model_stats

    def to_dict(self) -> dict:
        return asdict(self)


def model_stats(model_cfg: Any) -> ModelStats:
    """Exact parameter counts and training FLOPs per token, from the config alone.

    flops_per_token = 6 * n_matmul + 6 * n_layers * seq_len * (n_heads * head_dim), where
      - n_matmul = attention projections + MLP + output head (d_model * vocab). The head is
        a real matmul, so it is counted (as Hoffmann et al. 2022, App. F count the logits);
        the input embedding is a lookup and norms are elementwise, so they are not.
      - the attention term is Kaplan et al. 2020 (Table 1): forward 2 * n_layers * n_ctx * d_attn
        per token, i.e. QK^T and AV at 2 * n_ctx * d_attn each, halved by the causal mask
        (average context n_ctx/2); training is 3x forward.
    Only the config is read, so it works for a Hydra node or a plain dict.
    """
    s = model_spec(model_cfg)
    d, L, V = s.d_model, s.n_layers, s.vocab_size
    q_out = s.n_heads * s.head_dim
    kv_out = s.n_kv_heads * s.head_dim
    attn = d * q_out + 2 * d * kv_out + q_out * d  # q, k, v, o projections, no biases
    mlp = 3 * d * s.ffn_hidden  # SwiGLU: gate, up, down
    norms = 2 * d  # two RMSNorms per block (pre-norm in LLaMA, post-sublayer in OLMo-2)
    if s.family == "olmo":
        norms += q_out + kv_out  # OLMo-2 QK-norm is an RMSNorm over all heads' q and k
    n_non_embedding = L * (attn + mlp + norms) + d  # + final norm
    n_embedding = 2 * V * d  # input embedding + untied head
    n_matmul = L * (attn + mlp) + d * V
    flops = 6 * n_matmul + 6 * L * s.seq_len * q_out
    return ModelStats(
        family=s.family, size=s.size, n_layers=L, d_model=d, n_heads=s.n_heads,
        head_dim=s.head_dim, ffn_hidden=s.ffn_hidden, vocab_size=V, seq_len=s.seq_len,
        n_total=n_non_embedding + n_embedding, n_non_embedding=n_non_embedding,
        n_embedding=n_embedding, n_matmul=n_matmul, flops_per_token=flops,
    )
