"""Models stage: transformers LLaMA / OLMo-2 causal LMs from config, and their sizes.

``build_model(model_cfg)`` returns the module; ``model_stats(model_cfg)`` the exact
parameter counts and training FLOPs per token, computed from the config alone.
"""

from optlaw.models.build import build_model, hf_config
from optlaw.models.spec import ModelSpec, model_spec
from optlaw.models.stats import ModelStats, model_stats

__all__ = ["build_model", "hf_config", "model_spec", "model_stats", "ModelSpec", "ModelStats"]
