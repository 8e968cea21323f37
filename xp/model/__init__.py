"""The tri-mode model runtime: checkpoint loading, the two-mode forward over a static KV cache, LoRA.

Public API: `load_model`, `ModelBundle`, `ModelLoadError`, `ModelConfig`, `NLDModel`, `KVCache`.
"""

from xp.model.config import ModelConfig, RopeConfig, config_from_dict, load_config
from xp.model.errors import ModelLoadError
from xp.model.loader import ModelBundle, load_model, nld_cache_dir
from xp.model.transformer import KVCache, NLDModel

__all__ = ["KVCache", "ModelBundle", "ModelConfig", "ModelLoadError", "NLDModel", "RopeConfig",
           "config_from_dict", "load_config", "load_model", "nld_cache_dir"]
