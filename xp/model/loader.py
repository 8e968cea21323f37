"""`load_model`: resolve a checkpoint (local dir, hub id, builtin:tiny), build the model, tokenizer, LoRA."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from xp.model.config import ModelConfig, load_config
from xp.model.errors import ModelLoadError
from xp.model.lora import ADAPTER_CONFIG, load_lora
from xp.model.rope import rope_inv_freq
from xp.model.tokenizer import load_tokenizer
from xp.model.transformer import NLDModel
from xp.model.weights import load_into, read_state_dict

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32,
          "fp16": torch.float16, "float16": torch.float16}
BUILTIN_PREFIX = "builtin:"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]


@dataclass
class ModelBundle:
    """Everything an engine or server needs about one loaded model."""

    model: NLDModel
    tokenizer: Any                  # transformers PreTrainedTokenizerFast, chat template included
    config: ModelConfig
    max_model_len: int
    has_lora: bool
    eos_token_id: int
    mask_token_id: int
    end_think_token_id: Optional[int]
    name: str
    path: str = ""                  # resolved local checkpoint folder


def nld_cache_dir() -> Path:
    return Path(os.environ.get("NLD_CACHE") or Path.home() / ".cache" / "nld-eval")


ARITH_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "arith"


def _resolve_builtin(name: str) -> Path:
    kind = name[len(BUILTIN_PREFIX):]
    if kind == "arith":  # the small trained model shipped with the project (xp.model.train)
        if not (ARITH_CHECKPOINT / "config.json").is_file():
            raise ModelLoadError(f"builtin:arith is missing at {ARITH_CHECKPOINT}; rebuild it with: "
                                 f"python -m xp.model.train --out {ARITH_CHECKPOINT} (needs a GPU)")
        return ARITH_CHECKPOINT
    if kind != "tiny":
        raise ModelLoadError(f"unknown builtin model {name!r}; available: builtin:tiny, builtin:arith")
    path = nld_cache_dir() / "checkpoints" / "tiny"
    if not (path / "config.json").is_file():
        _build_tiny_once(path)
    return path


def _build_tiny_once(path: Path) -> None:
    """Build builtin:tiny under an exclusive file lock: concurrent jobs on a fresh machine
    (several SLURM groups, several workers) must not replace each other's checkpoint."""
    import fcntl

    from xp.model.tiny import build_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "config.json").is_file():
            build_checkpoint(path, with_lora=True)


def _snapshot(repo_id: str, what: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS + ["linear_spec_lora/*"],
                                      local_files_only=True))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS + ["linear_spec_lora/*"]))
    except Exception as e:  # network, auth, unknown repo: all user-facing
        raise ModelLoadError(f"{what} {repo_id!r} is not a local folder and could not be fetched from the "
                             f"Hugging Face hub ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                             ) from None


def resolve_checkpoint(model: str) -> Path:
    """Local folder, `builtin:NAME`, or a hub id (local HF cache first, then download)."""
    if model.startswith(BUILTIN_PREFIX):
        return _resolve_builtin(model)
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"--model {model} is a file; point it at the checkpoint folder")
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return _snapshot(model, "model")
    raise ModelLoadError(f"model folder {model} does not exist")


def _resolve_lora(lora_path: str, ckpt: Path) -> Path:
    path = Path(lora_path).expanduser()
    if (path / ADAPTER_CONFIG).is_file():
        return path
    if (ckpt / lora_path / ADAPTER_CONFIG).is_file():  # e.g. "linear_spec_lora" inside the model repo
        return ckpt / lora_path
    if path.is_dir():
        raise ModelLoadError(f"LoRA folder {lora_path} has no {ADAPTER_CONFIG}; give a PEFT adapter folder")
    if path.is_absolute() or lora_path.startswith("."):
        raise ModelLoadError(f"LoRA folder {lora_path} does not exist; fetch the adapter with "
                             "scripts/fetch_bundled_lora.sh or give a PEFT adapter folder")
    if lora_path.count("/") == 1:
        return _snapshot(lora_path, "LoRA adapter")
    raise ModelLoadError(f"LoRA adapter {lora_path} not found (neither a folder nor inside {ckpt})")


def parse_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelLoadError(f"bad device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device} requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"device type {dev.type!r} is not supported; use cpu or cuda")
    return dev


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _empty_model(config, device: torch.device, dtype: torch.dtype) -> NLDModel:
    """The model with uninitialised weights straight on `device` in `dtype`: no random init and
    no fp32 CPU copy (an 8B model would spend minutes and 32 GB there); `load_into` fills it."""
    with torch.device("meta"):
        net = NLDModel(config)
    net = net.to_empty(device=device).to(dtype=dtype)
    inv_freq, _ = rope_inv_freq(config.rope, config.head_dim)   # buffers are not in the checkpoint
    net.inv_freq = inv_freq.to(device=device, dtype=dtype)
    return net


def load_model(model: str, *, tokenizer: Optional[str] = None, dtype: str = "bf16", device: str = "cpu",
               lora_path: Optional[str] = None, max_model_len: Optional[int] = None) -> ModelBundle:
    """Load a Nemotron-Labs-Diffusion checkpoint (see docs/architecture.md section 9)."""
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of bf16, fp32")
    dev = parse_device(device)
    ckpt = resolve_checkpoint(model)
    config = load_config(ckpt)
    if max_model_len is not None and max_model_len <= 0:
        raise ModelLoadError(f"max_model_len must be > 0, got {max_model_len}")
    net = _empty_model(config, dev, DTYPES[dtype])
    load_into(net, read_state_dict(ckpt), str(ckpt))
    net.eval()
    if lora_path:
        load_lora(net, _resolve_lora(lora_path, ckpt))
        net.to(device=dev, dtype=DTYPES[dtype])
    tok_dir = ckpt if tokenizer is None else (resolve_checkpoint(tokenizer) if not Path(tokenizer).is_dir()
                                              else Path(tokenizer))
    with _quiet_transformers():
        tok = load_tokenizer(tok_dir)
    if len(tok) > config.vocab_size:
        raise ModelLoadError(f"tokenizer at {tok_dir} has {len(tok)} tokens, more than the model's vocab_size "
                             f"{config.vocab_size}; use the model's own tokenizer")
    end_think = tok.encode("</think>", add_special_tokens=False)
    return ModelBundle(
        model=net, tokenizer=tok, config=config,
        max_model_len=max_model_len or config.max_position_embeddings, has_lora=net.has_lora,
        eos_token_id=config.eos_token_id, mask_token_id=config.mask_token_id,
        end_think_token_id=end_think[-1] if end_think else None, name=model, path=str(ckpt))
