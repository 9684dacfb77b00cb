"""Models stage: transformers LLaMA / OLMo-2 causal LMs from config, and their sizes.

``build_model(model_cfg)`` returns the module; ``model_stats(model_cfg)`` the exact
parameter counts and training FLOPs per token, computed from the config alone.
"""

from optlaw.models.blocks import checkpoint_activations, compile_blocks
from optlaw.models.build import build_model, hf_config
from optlaw.models.loss import linear_cross_entropy
from optlaw.models.spec import ModelSpec, model_spec
from optlaw.models.stats import ModelStats, model_stats

__all__ = ["build_model", "checkpoint_activations", "compile_blocks", "hf_config", "linear_cross_entropy", "model_spec", "model_stats", "ModelSpec", "ModelStats"]
