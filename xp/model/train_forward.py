"""A training forward through `NLDModel`'s own modules with an explicit attention mask.

`NLDModel.forward` decodes over a KV cache under inference mode; training needs gradients and one
mask that mixes the two attention modes (a clean causal stream and noisy blocks that see the clean
prefix causally and their own block bidirectionally). This runs the same weights and the same
math (RMSNorm, YaRN rope, Llama-4 query scale, GQA, SwiGLU, untied head); a test checks it against
`NLDModel.forward` in both modes. LoRA is switched per token (`lora_gate`), so one batch can hold
draft tokens (adapter on) and clean tokens (adapter off).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from xp.model.rope import apply_rope, llama4_query_scale, rope_cos_sin
from xp.model.transformer import Linear, NLDModel


def _proj(lin: Linear, x: torch.Tensor, gate: Optional[torch.Tensor]) -> torch.Tensor:
    y = F.linear(x, lin.weight)
    if gate is not None and lin.lora_A is not None:
        delta = F.linear(F.linear(x, lin.lora_A), lin.lora_B) * lin.lora_scale
        y = y + delta * gate[..., None].to(delta.dtype)
    return y


def hidden_states(model: NLDModel, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                  lora_gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ids, positions [B, S]; mask [B, 1, S, S] bool (True = may attend); -> final-norm hidden [B, S, H]."""
    x = model.encoder.embed_tokens(ids)
    cos, sin = rope_cos_sin(positions, model.inv_freq, model.attention_factor, torch.float32)
    q_scale = llama4_query_scale(positions, model.config.rope, torch.float32)
    B, S = ids.shape
    for layer in model.encoder.layers:
        att = layer.self_attn
        h = layer.input_layernorm(x)
        q = _proj(att.q_proj, h, lora_gate).view(B, S, att.n_heads, att.head_dim).transpose(1, 2)
        k = _proj(att.k_proj, h, lora_gate).view(B, S, att.n_kv, att.head_dim).transpose(1, 2)
        v = _proj(att.v_proj, h, lora_gate).view(B, S, att.n_kv, att.head_dim).transpose(1, 2)
        q = apply_rope(q, cos.to(q.dtype), sin.to(q.dtype)) * q_scale.to(q.dtype)
        k = apply_rope(k, cos.to(k.dtype), sin.to(k.dtype))
        rep = att.n_heads // att.n_kv          # GQA by repeating K/V heads (any SDPA backend takes it)
        k, v = k.to(q.dtype).repeat_interleave(rep, dim=1), v.to(q.dtype).repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + _proj(att.o_proj, out.transpose(1, 2).reshape(B, S, -1), lora_gate)
        h = layer.post_attention_layernorm(x)
        mlp = layer.mlp
        x = x + _proj(mlp.down_proj, F.silu(_proj(mlp.gate_proj, h, lora_gate)) * _proj(mlp.up_proj, h, lora_gate),
                      lora_gate)
    return model.encoder.norm(x)


def logits(model: NLDModel, hidden: torch.Tensor) -> torch.Tensor:
    return model.diffusion_head(hidden).float()
