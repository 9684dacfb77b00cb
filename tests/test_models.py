"""Models stage: presets follow the ladder formula, analytic counts equal the real model."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from optlaw.config import compose, config_dir
from optlaw.errors import ConfigError
from optlaw.models import build_model, model_stats
from optlaw.models.ladder import CPU_SIZES, FAMILIES, REAL_SIZES, TINY_SIZES, ladder_preset, preset_yaml

PRESETS = [(f, s) for f in FAMILIES for s in [*TINY_SIZES, *CPU_SIZES, *REAL_SIZES]]


def _preset_cfg(family: str, size: str):
    return OmegaConf.load(config_dir() / "model" / family / f"{size}.yaml")


@pytest.mark.parametrize("family,size", PRESETS)
def test_preset_yaml_equals_ladder_formula(family, size):
    path = config_dir() / "model" / family / f"{size}.yaml"
    assert path.read_text() == preset_yaml(ladder_preset(family, size)), (
        f"{path} drifted from the ladder formula; regenerate with `python -m optlaw.models.ladder`"
    )


@pytest.mark.parametrize("family,size", PRESETS)
def test_analytic_counts_match_instantiated_model(family, size):
    cfg = _preset_cfg(family, size)
    stats = model_stats(cfg)
    with torch.device("meta"):  # no memory, so 1.5B is as fast as 1M
        model = build_model(cfg)
    params = dict(model.named_parameters())
    n_total = sum(p.numel() for p in params.values())
    n_embedding = params["model.embed_tokens.weight"].numel() + params["lm_head.weight"].numel()
    assert params["model.embed_tokens.weight"] is not params["lm_head.weight"]  # untied
    assert stats.n_total == n_total
    assert stats.n_embedding == n_embedding
    assert stats.n_non_embedding == n_total - n_embedding
    # The name is the nominal N_non_embedding; the formula keeps every preset within 15%.
    assert abs(stats.n_non_embedding / ladder_preset(family, size)["nominal_params"] - 1) < 0.15


def test_cpu_presets_use_synthetic_vocab_and_short_context():
    synthetic = compose("train", []).data
    for size in CPU_SIZES:
        for family in FAMILIES:
            cfg = _preset_cfg(family, size)
            assert cfg.vocab_size == synthetic.vocab_size
            assert cfg.seq_len <= 256


def test_tiny_presets_use_facts_vocab_and_span_a_decade():
    facts = compose("train", ["data=facts"]).data
    sizes = []
    for size in TINY_SIZES:
        for family in FAMILIES:
            cfg = _preset_cfg(family, size)
            assert cfg.vocab_size == facts.vocab_size and cfg.seq_len == 64
        sizes.append(model_stats(_preset_cfg("llama", size)).n_non_embedding)
    assert sizes == sorted(sizes) and sizes[-1] / sizes[0] >= 10


def test_olmo_has_qk_norm_and_post_norms_llama_has_pre_norms():
    cfg = _preset_cfg("olmo", "1m")
    names = [n for n, _ in build_model(cfg).named_parameters()]
    assert any("self_attn.q_norm" in n for n in names) and any("post_feedforward_layernorm" in n for n in names)
    llama = [n for n, _ in build_model(_preset_cfg("llama", "1m")).named_parameters()]
    assert any("input_layernorm" in n for n in llama) and not any("q_norm" in n for n in llama)
    assert not any(n.endswith(".bias") for n in names + llama)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_logits_shape_and_sdpa(family):
    cfg = _preset_cfg(family, "1m")
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.config._attn_implementation == "sdpa"
    x = torch.randint(0, cfg.vocab_size, (2, 17))
    logits = model(x).logits
    assert logits.shape == (2, 17, cfg.vocab_size)
    # Fresh init predicts near-uniformly: loss close to log(vocab).
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
    assert abs(loss.item() - torch.log(torch.tensor(float(cfg.vocab_size))).item()) < 0.5


def test_flops_per_token_formula_by_hand():
    # 2 layers, d=64, 2 heads of 32, ffn 128, vocab 100, seq 16 -- worked out by hand:
    # attention weights 4*64*64 = 16384, MLP 3*64*128 = 24576, head 64*100 = 6400
    # n_matmul = 2*(16384+24576) + 6400 = 88320; attention term 6*2*16*64 = 12288
    cfg = dict(family="llama", n_layers=2, d_model=64, n_heads=2, ffn_hidden=128, vocab_size=100, seq_len=16)
    stats = model_stats(cfg)
    assert stats.n_matmul == 88320
    assert stats.flops_per_token == 6 * 88320 + 12288


def test_model_stats_accepts_plain_dict_and_hydra_node_alike():
    node = compose("train", ["model=olmo/3m"]).model
    assert model_stats(node) == model_stats(OmegaConf.to_container(node))


def test_bad_model_config_is_one_line_config_error():
    with pytest.raises(ConfigError, match="model.n_heads"):
        model_stats(dict(family="llama", n_layers=2, d_model=100, n_heads=3, ffn_hidden=64, vocab_size=10, seq_len=8))
    with pytest.raises(ConfigError, match="model.family"):
        model_stats(dict(family="gpt9", n_layers=2, d_model=64, n_heads=2, ffn_hidden=64, vocab_size=10, seq_len=8))
    with pytest.raises(ConfigError, match="model.head_dim"):
        model_stats(dict(family="olmo", n_layers=2, d_model=64, n_heads=2, head_dim=16, ffn_hidden=64, vocab_size=10, seq_len=8))
    with pytest.raises(ConfigError, match="unknown model"):
        compose("train", ["model=llama/7b"])


@pytest.mark.parametrize("family,n_kv_heads,head_dim", [("llama", 1, 48), ("llama", 2, None), ("olmo", 1, None)])
def test_counts_match_for_grouped_query_and_custom_head_dim(family, n_kv_heads, head_dim):
    cfg = dict(family=family, n_layers=2, d_model=64, n_heads=4, n_kv_heads=n_kv_heads, head_dim=head_dim,
               ffn_hidden=96, vocab_size=50, seq_len=16)
    with torch.device("meta"):
        model = build_model(cfg)
    assert model_stats(cfg).n_total == sum(p.numel() for p in model.parameters())
