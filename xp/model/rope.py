"""Rotary position embedding: YaRN inverse frequencies and the Llama-4 query scaling.

The formulas follow transformers' `_compute_yarn_parameters` and Ministral3's
`get_llama_4_attn_scale` (float32 tables; cos/sin multiplied by the YaRN attention factor, then cast
to the activation dtype), so our causal logits match `Ministral3ForCausalLM` on the same weights.
"""

from __future__ import annotations

import math

import torch

from xp.model.config import RopeConfig


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_inv_freq(rope: RopeConfig, head_dim: int) -> tuple[torch.Tensor, float]:
    """Return (inv_freq [head_dim/2] float32, attention_factor)."""
    base, dim = rope.rope_theta, head_dim
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)
    if rope.rope_type == "default":
        return 1.0 / pos_freqs, 1.0
    factor = rope.factor
    attention_factor = rope.attention_factor
    if attention_factor is None:
        if rope.mscale and rope.mscale_all_dim:
            attention_factor = _yarn_mscale(factor, rope.mscale) / _yarn_mscale(factor, rope.mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)

    def correction_dim(num_rotations: float) -> float:
        orig = rope.original_max_position_embeddings
        return (dim * math.log(orig / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation_weight = 1 - ramp                 # 1: keep the original frequency, 0: interpolate
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_weight) + (1.0 / pos_freqs) * extrapolation_weight
    return inv_freq, float(attention_factor)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [B, L] int -> cos, sin [B, 1, L, head_dim] in `dtype` (broadcast over heads)."""
    freqs = positions[..., None].float() * inv_freq.float()        # [B, L, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)                        # [B, L, D]
    cos = (emb.cos() * attention_factor).to(dtype)
    sin = (emb.sin() * attention_factor).to(dtype)
    return cos[:, None], sin[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, D]; rotate-half convention (first half paired with second half)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def llama4_query_scale(positions: torch.Tensor, rope: RopeConfig, dtype: torch.dtype) -> torch.Tensor:
    """positions [B, L] -> [B, 1, L, 1]: 1 + beta * log(1 + floor(pos / original_max_pos))."""
    beta = rope.llama_4_scaling_beta
    scale = 1 + beta * torch.log(1 + torch.floor(positions.float() / rope.original_max_position_embeddings))
    return scale[:, None, :, None].to(dtype)
