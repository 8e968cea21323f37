"""Write a random-weight checkpoint in the real Nemotron-Labs-Diffusion format.

    python -m xp.model.tiny --out DIR [--with-lora] [--seed 0]
    python -m xp.model.tiny --out DIR --preset 8b --device cuda     # the 8B architecture, random bf16

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


def config_8b() -> ModelConfig:
    """Nemotron-Labs-Diffusion-8B's architecture (the HF repo's config.json)."""
    rope = RopeConfig(rope_theta=1e6, rope_type="yarn", factor=16.0, original_max_position_embeddings=16384,
                      beta_fast=32.0, beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0, llama_4_scaling_beta=0.1)
    return ModelConfig(hidden_size=4096, num_hidden_layers=34, num_attention_heads=32, num_key_value_heads=8,
                       head_dim=128, intermediate_size=14336, vocab_size=131072, max_position_embeddings=262144,
                       mask_token_id=100, eos_token_ids=(11,), bos_token_id=1, rms_norm_eps=1e-5, rope=rope,
                       torch_dtype="bfloat16")


def random_large_model(config: ModelConfig, device: str, dtype: torch.dtype, seed: int = 0) -> NLDModel:
    """Random weights made directly on `device` (no CPU copy): N(0, 0.02), norms at 1."""
    from xp.model.rope import rope_inv_freq

    with torch.device("meta"):
        model = NLDModel(config)
    model = model.to_empty(device=device).to(dtype=dtype)
    model.inv_freq = rope_inv_freq(config.rope, config.head_dim)[0].to(device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return model.eval()


PRESETS = {"tiny": tiny_config, "8b": config_8b}


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
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if ".lora_" not in k}
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
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                    help="architecture: tiny (default, ~0.3M params) or 8b (Nemotron-Labs-Diffusion-8B shapes)")
    ap.add_argument("--device", default="cpu", help="where the random weights are made (8b: use cuda)")
    ap.add_argument("--max-shard-gb", type=float, default=None, help="split weights into shards of this size")
    args = ap.parse_args(argv)
    config = PRESETS[args.preset]()
    model = None
    if args.preset != "tiny":
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            print("error: --device cuda requested but CUDA is not available", file=sys.stderr)
            return 2
        model = random_large_model(config, args.device, torch.bfloat16, args.seed)
    shard = int(args.max_shard_gb * 2**30) if args.max_shard_gb else None
    try:
        path = build_checkpoint(args.out, config, with_lora=args.with_lora, seed=args.seed, model=model,
                                max_shard_bytes=shard, tokenizer_vocab=1024 if model is not None else None)
    except OSError as e:
        print(f"error: cannot write {args.out}: {e}", file=sys.stderr)
        return 2
    print(f"wrote tiny checkpoint to {path}" + (f" (LoRA in {path / LORA_SUBDIR})" if args.with_lora else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
