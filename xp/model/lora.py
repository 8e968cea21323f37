"""PEFT-format LoRA adapters: read `adapter_config.json` + `adapter_model.safetensors`, attach exactly.

Attached deltas are y = W x + (alpha / r) * B(A(x)) (alpha / sqrt(r) with `use_rslora`), active only
in forwards called with `lora=True`. PEFT key names look like
`base_model.model.encoder.layers.0.self_attn.o_proj.lora_A.weight`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from xp.model.errors import ModelLoadError
from xp.model.transformer import Linear, NLDModel

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class LoraConfig:
    r: int
    lora_alpha: float
    target_modules: tuple[str, ...] | str
    use_rslora: bool = False
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        """adapter_config.json as PEFT writes it (the fields PEFT needs to load it)."""
        return {"peft_type": "LORA", "task_type": None, "base_model_name_or_path": None,
                "r": self.r, "lora_alpha": self.lora_alpha, "target_modules": list(self.target_modules),
                "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
                "use_rslora": self.use_rslora, "init_lora_weights": True, "modules_to_save": None,
                "rank_pattern": dict(self.rank_pattern), "alpha_pattern": dict(self.alpha_pattern)}


def _pattern_value(patterns: dict, module_name: str, default):
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module_name):
            return value
    return default


def read_lora_config(adapter_dir: Path) -> LoraConfig:
    path = adapter_dir / ADAPTER_CONFIG
    if not path.is_file():
        raise ModelLoadError(f"no {ADAPTER_CONFIG} in {adapter_dir}: --lora-path must be a PEFT adapter folder")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(d, dict) or str(d.get("peft_type", "LORA")).upper() != "LORA":
        raise ModelLoadError(f"{path}: peft_type must be LORA, got {d.get('peft_type')!r}"
                             if isinstance(d, dict) else f"{path}: expected a JSON object")
    for key in ("r", "lora_alpha", "target_modules"):
        if d.get(key) in (None, [], ""):
            raise ModelLoadError(f"{path}: missing required field '{key}'")
    if d.get("bias", "none") != "none" or d.get("fan_in_fan_out"):
        raise ModelLoadError(f"{path}: bias={d.get('bias')!r}/fan_in_fan_out are not supported "
                             "(expected bias 'none', fan_in_fan_out false)")
    if d.get("use_dora"):
        raise ModelLoadError(f"{path}: DoRA adapters are not supported")
    targets = d["target_modules"]
    targets = targets if isinstance(targets, str) else tuple(targets)
    return LoraConfig(r=int(d["r"]), lora_alpha=float(d["lora_alpha"]), target_modules=targets,
                      use_rslora=bool(d.get("use_rslora", False)), rank_pattern=d.get("rank_pattern") or {},
                      alpha_pattern=d.get("alpha_pattern") or {})


def _is_target(cfg: LoraConfig, module_name: str) -> bool:
    if isinstance(cfg.target_modules, str):
        return re.fullmatch(cfg.target_modules, module_name) is not None
    return any(module_name == t or module_name.endswith("." + t) for t in cfg.target_modules)


def load_lora(model: NLDModel, adapter_dir: str | Path) -> LoraConfig:
    """Attach the adapter in `adapter_dir` to `model` (in place); returns its config."""
    adapter_dir = Path(adapter_dir)
    cfg = read_lora_config(adapter_dir)
    wpath = adapter_dir / ADAPTER_WEIGHTS
    if not wpath.is_file():
        raise ModelLoadError(f"no {ADAPTER_WEIGHTS} in {adapter_dir} (only safetensors adapters are supported)")
    try:
        raw = load_file(str(wpath))
    except (SafetensorError, OSError) as e:
        raise ModelLoadError(f"cannot read {wpath}: {e}") from None
    # PEFT may or may not include the adapter name ("default") in saved keys
    tensors = {k.removeprefix(PEFT_PREFIX).replace(".default.", "."): v for k, v in raw.items()}
    modules = {n: m for n, m in model.named_modules() if isinstance(m, Linear)}
    attached = 0
    for name, module in modules.items():
        if not _is_target(cfg, name):
            continue
        a, b = tensors.pop(f"{name}.lora_A.weight", None), tensors.pop(f"{name}.lora_B.weight", None)
        if a is None or b is None:
            raise ModelLoadError(f"{wpath}: adapter targets {name} but has no lora_A/lora_B weights for it")
        r = _pattern_value(cfg.rank_pattern, name, cfg.r)
        alpha = _pattern_value(cfg.alpha_pattern, name, cfg.lora_alpha)
        if a.shape != (r, module.in_features) or b.shape != (module.out_features, r):
            raise ModelLoadError(f"{wpath}: {name} LoRA shapes {tuple(a.shape)}/{tuple(b.shape)} do not fit "
                                 f"r={r} and the layer {module.in_features}->{module.out_features}")
        scale = alpha / math.sqrt(r) if cfg.use_rslora else alpha / r
        module.set_lora(a, b, scale)
        attached += 1
    if attached == 0:
        raise ModelLoadError(f"{adapter_dir}: target_modules {cfg.target_modules!r} match no layer of the model")
    if tensors:
        raise ModelLoadError(f"{wpath}: tensors for modules the model or target_modules do not have: "
                             f"{sorted(tensors)[:3]}")
    model.has_lora = True
    return cfg


def random_lora_tensors(model: NLDModel, cfg: LoraConfig, generator: torch.Generator,
                        std: float = 0.02) -> dict[str, torch.Tensor]:
    """Random non-zero A and B for every target module, under PEFT key names (for tiny checkpoints)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, Linear) and _is_target(cfg, name):
            out[f"{PEFT_PREFIX}{name}.lora_A.weight"] = torch.randn(cfg.r, m.in_features, generator=generator) * std
            out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = torch.randn(m.out_features, cfg.r, generator=generator) * std
    return out
