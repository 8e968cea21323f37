"""The model configuration: `config.json` of a Nemotron-Labs-Diffusion checkpoint, validated.

Only the fields that change the computation are kept; training-only fields (`ar_loss_weight`,
`dlm_paradigm`, `block_size`, ...) are read and ignored. Every problem is a `ModelLoadError` whose
message names the field and says what to fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from xp.model.errors import ModelLoadError

MODEL_TYPE = "nemotron_labs_diffusion"


@dataclass(frozen=True)
class RopeConfig:
    """YaRN rotary embedding plus the Llama-4 query scaling (beta=0 disables it)."""

    rope_theta: float = 1_000_000.0
    rope_type: str = "yarn"                       # "yarn" or "default"
    factor: float = 16.0
    original_max_position_embeddings: int = 16384
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: Optional[float] = 1.0
    mscale_all_dim: Optional[float] = 1.0
    attention_factor: Optional[float] = None      # None: derived from factor/mscale as transformers does
    truncate: bool = True
    llama_4_scaling_beta: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    mask_token_id: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: Optional[int] = None
    rms_norm_eps: float = 1e-5
    rope: RopeConfig = field(default_factory=RopeConfig)
    torch_dtype: str = "bfloat16"

    @property
    def eos_token_id(self) -> int:
        return self.eos_token_ids[0]

    def to_json_dict(self) -> dict[str, Any]:
        """The config.json content in the checkpoint format (the 8B's layout)."""
        rope = {k: v for k, v in asdict(self.rope).items() if v is not None}
        if rope.get("truncate", True):
            rope.pop("truncate")
        return {
            "architectures": ["NemotronLabsDiffusionModel"], "model_type": MODEL_TYPE,
            "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "hidden_act": "silu",
            "hidden_size": self.hidden_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size, "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings, "rms_norm_eps": self.rms_norm_eps,
            "mask_token_id": self.mask_token_id,
            "eos_token_id": self.eos_token_ids[0] if len(self.eos_token_ids) == 1 else list(self.eos_token_ids),
            "bos_token_id": self.bos_token_id, "rope_parameters": rope,
            "tie_word_embeddings": False, "sliding_window": None, "torch_dtype": self.torch_dtype,
            "dlm_paradigm": "bidirectional", "block_size": 32, "use_cache": False,
        }


def _require(d: dict, key: str, kind: type, where: str):
    if key not in d or d[key] is None:
        raise ModelLoadError(f"{where}: missing required field '{key}'")
    value = d[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ModelLoadError(f"{where}: field '{key}' must be an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ModelLoadError(f"{where}: field '{key}' must be a number, got {value!r}")
    return value


def _positive(d: dict, key: str, where: str) -> int:
    value = _require(d, key, int, where)
    if value <= 0:
        raise ModelLoadError(f"{where}: field '{key}' must be > 0, got {value}")
    return value


def _parse_rope(d: dict, where: str) -> RopeConfig:
    params = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ModelLoadError(f"{where}: 'rope_parameters' must be an object, got {params!r}")
    params = dict(params)
    rope_type = params.get("rope_type", params.get("type", "default"))
    theta = params.get("rope_theta", d.get("rope_theta", 10000.0))
    if rope_type not in ("yarn", "default"):
        raise ModelLoadError(f"{where}: rope_type '{rope_type}' is not supported (use 'yarn' or 'default')")
    if rope_type == "default":
        return RopeConfig(rope_theta=float(theta), rope_type="default", factor=1.0,
                          llama_4_scaling_beta=float(params.get("llama_4_scaling_beta") or 0.0),
                          original_max_position_embeddings=int(params.get(
                              "original_max_position_embeddings", d["max_position_embeddings"])))
    for key in ("factor", "original_max_position_embeddings"):
        if params.get(key) is None:
            raise ModelLoadError(f"{where}: yarn rope_parameters need '{key}'")
    if params["factor"] <= 0 or params["original_max_position_embeddings"] <= 0:
        raise ModelLoadError(f"{where}: yarn 'factor' and 'original_max_position_embeddings' must be > 0")
    return RopeConfig(
        rope_theta=float(theta), rope_type="yarn", factor=float(params["factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]),
        beta_fast=float(params.get("beta_fast") or 32.0), beta_slow=float(params.get("beta_slow") or 1.0),
        mscale=params.get("mscale"), mscale_all_dim=params.get("mscale_all_dim"),
        attention_factor=params.get("attention_factor"), truncate=bool(params.get("truncate", True)),
        llama_4_scaling_beta=float(params.get("llama_4_scaling_beta") or 0.0))


def config_from_dict(d: dict, where: str = "config.json") -> ModelConfig:
    """Validate a config.json dict of the nemotron_labs_diffusion family."""
    if not isinstance(d, dict):
        raise ModelLoadError(f"{where}: expected a JSON object")
    if d.get("model_type") != MODEL_TYPE:
        raise ModelLoadError(f"{where}: model_type is {d.get('model_type')!r}, expected '{MODEL_TYPE}' "
                             "(a Nemotron-Labs-Diffusion checkpoint)")
    for key, ok in (("attention_bias", False), ("mlp_bias", False), ("tie_word_embeddings", False)):
        if d.get(key, False) != ok:
            raise ModelLoadError(f"{where}: {key}={d.get(key)!r} is not supported (expected {ok})")
    if d.get("hidden_act", "silu") != "silu":
        raise ModelLoadError(f"{where}: hidden_act {d.get('hidden_act')!r} is not supported (expected 'silu')")
    if d.get("sliding_window") is not None:
        raise ModelLoadError(f"{where}: sliding_window attention is not supported (expected null)")
    hidden = _positive(d, "hidden_size", where)
    heads = _positive(d, "num_attention_heads", where)
    kv_heads = d.get("num_key_value_heads") or heads
    if not isinstance(kv_heads, int) or kv_heads <= 0 or heads % kv_heads:
        raise ModelLoadError(f"{where}: num_key_value_heads={kv_heads!r} must be a positive divisor of "
                             f"num_attention_heads={heads}")
    head_dim = d.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise ModelLoadError(f"{where}: head_dim={head_dim!r} must be a positive even integer")
    vocab = _positive(d, "vocab_size", where)
    _positive(d, "max_position_embeddings", where)
    mask_id = _require(d, "mask_token_id", int, where)
    eos = _require(d, "eos_token_id", object, where)
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
    for tid, name in [(mask_id, "mask_token_id")] + [(e, "eos_token_id") for e in eos_ids]:
        if not isinstance(tid, int) or not 0 <= tid < vocab:
            raise ModelLoadError(f"{where}: {name}={tid!r} must be a token id in [0, vocab_size={vocab})")
    eps = _require(d, "rms_norm_eps", float, where) if "rms_norm_eps" in d else 1e-5
    if not (eps > 0 and math.isfinite(eps)):
        raise ModelLoadError(f"{where}: rms_norm_eps must be > 0")
    return ModelConfig(
        hidden_size=hidden, num_hidden_layers=_positive(d, "num_hidden_layers", where),
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
        intermediate_size=_positive(d, "intermediate_size", where), vocab_size=vocab,
        max_position_embeddings=d["max_position_embeddings"], mask_token_id=mask_id,
        eos_token_ids=eos_ids, bos_token_id=d.get("bos_token_id"), rms_norm_eps=float(eps),
        rope=_parse_rope(d, where), torch_dtype=str(d.get("torch_dtype") or d.get("dtype") or "bfloat16"))


def load_config(path: str | Path) -> ModelConfig:
    """Read and validate `<dir>/config.json` (or a config file path)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"no config.json at {path}: point --model at a checkpoint directory")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON ({e}); re-download or fix the file") from None
    return config_from_dict(d, where=str(path))
