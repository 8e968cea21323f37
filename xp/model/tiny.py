"""Write a random-weight checkpoint in the real Nemotron-Labs-Diffusion format.

    python -m xp.model.tiny --out DIR [--with-lora] [--seed 0]

DIR gets config.json, model.safetensors, tokenizer files (with chat template) and, with
--with-lora, a PEFT adapter in DIR/linear_spec_lora (the HF repo's layout). `build_checkpoint`
takes any `ModelConfig`, so a trained small model can be written in the same format.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

from xp.model.config import ModelConfig, RopeConfig
from xp.model.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoraConfig, random_lora_tensors
from xp.model.tokenizer import EOS_ID, MASK_ID, BOS_ID, build_tokenizer
from xp.model.transformer import NLDModel
from xp.model.weights import atomic_write_text, save_state_dict

LORA_SUBDIR = "linear_spec_lora"


def tiny_config(**overrides) -> ModelConfig:
    """A ~0.3M-parameter config shaped like the 8B (GQA 4/2 heads, YaRN, Llama-4 scaling)."""
    rope = overrides.pop("rope", None) or RopeConfig(
        rope_theta=10000.0, factor=16.0, original_max_position_embeddings=1024, beta_fast=32.0,
        beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0, llama_4_scaling_beta=0.1)
    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                head_dim=16, intermediate_size=192, vocab_size=1024, max_position_embeddings=16384,
                mask_token_id=MASK_ID, eos_token_ids=(EOS_ID,), bos_token_id=BOS_ID, rms_norm_eps=1e-5,
                rope=rope, torch_dtype="float32")
    base.update(overrides)
    return ModelConfig(**base)


def random_model(config: ModelConfig, seed: int = 0, std: float = 0.25) -> NLDModel:
    """Random weights, peaked enough that greedy decoding is not a string of near-ties."""
    gen = torch.Generator().manual_seed(seed)
    model = NLDModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std / max(1.0, p.shape[1] / 64) ** 0.5)
    return model


def write_lora(model: NLDModel, out_dir: Path, seed: int, r: int = 8, alpha: float = 32.0,
               targets: tuple[str, ...] = ("o_proj",)) -> None:
    """A PEFT-format adapter (random non-zero A and B) for `model` into `out_dir`."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets)
    tensors = random_lora_tensors(model, cfg, torch.Generator().manual_seed(seed + 1), std=0.3)
    save_file(tensors, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    atomic_write_text(out_dir / ADAPTER_CONFIG, json.dumps(cfg.to_json_dict(), indent=2))


def save_checkpoint(model: NLDModel, out_dir: str | Path, *, tokenizer_from: Optional[Path] = None,
                    max_shard_bytes: Optional[int] = None) -> None:
    """Write config.json + weights of `model` (and copy tokenizer files from `tokenizer_from`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if ".lora_" not in k}
    save_state_dict(state, out_dir, max_shard_bytes)
    if tokenizer_from is not None:
        for f in tokenizer_from.iterdir():
            if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
                shutil.copy2(f, out_dir / f.name)
    atomic_write_text(out_dir / "config.json", json.dumps(model.config.to_json_dict(), indent=2))


def build_checkpoint(out_dir: str | Path, config: Optional[ModelConfig] = None, *, with_lora: bool = False,
                     seed: int = 0, model: Optional[NLDModel] = None, max_shard_bytes: Optional[int] = None,
                     tokenizer_vocab: Optional[int] = None) -> Path:
    """Build the whole checkpoint folder atomically (temp dir + rename); returns its path.

    `model` (weights) defaults to random ones for `config`; the tokenizer is trained to fit
    `config.vocab_size` (or `tokenizer_vocab`).
    """
    config = config or (model.config if model is not None else tiny_config())
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".tmp-{out_dir.name}-"))
    try:
        n = build_tokenizer(tmp, tokenizer_vocab or config.vocab_size)
        if n > config.vocab_size:
            raise ValueError(f"tokenizer has {n} tokens but vocab_size is {config.vocab_size}")
        model = model if model is not None else random_model(config, seed)
        save_checkpoint(model, tmp, max_shard_bytes=max_shard_bytes)
        if with_lora:
            write_lora(model, tmp / LORA_SUBDIR, seed)
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xp.model.tiny", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="checkpoint folder to create (replaced if it exists)")
    ap.add_argument("--with-lora", action="store_true", help="also write a LoRA adapter in OUT/linear_spec_lora")
    ap.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = ap.parse_args(argv)
    try:
        path = build_checkpoint(args.out, with_lora=args.with_lora, seed=args.seed)
    except OSError as e:
        print(f"error: cannot write {args.out}: {e}", file=sys.stderr)
        return 2
    print(f"wrote tiny checkpoint to {path}" + (f" (LoRA in {path / LORA_SUBDIR})" if args.with_lora else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
