"""The Nemotron-Labs-Diffusion network: a Ministral3-style decoder with an untied diffusion head.

Departures from a plain Mistral decoder:
- YaRN RoPE plus the Llama-4 query scaling 1 + beta*log(1 + floor(pos / original_max_pos)).
- One forward, two attention modes over a static KV cache (`KVCache`):
  * causal: query i of row b sees cache slots [0, cache_len[b] + i], the AR view;
  * bidir:  every query of the chunk sees the whole cached prefix and the whole chunk.
  Both modes write the chunk's K/V at slots [cache_len[b], cache_len[b] + L); only the caller moves
  `cache_len` (a causal commit advances it, a bidirectional pass never does), so slots beyond
  `cache_len` are scratch that the next causal pass overwrites.
- Optional LoRA deltas on any projection, switched per forward (`lora=True` in draft passes only).

Module names equal the checkpoint's (`encoder.layers.{i}.self_attn.o_proj`, `diffusion_head`), so
loading is a key-for-key copy.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from xp.model.config import ModelConfig
from xp.model.rope import apply_rope, llama4_query_scale, rope_cos_sin, rope_inv_freq

AttnMode = Literal["causal", "bidir"]


class KVCache:
    """Preallocated per-layer K/V buffers [B, kv_heads, max_len, head_dim] and per-row lengths.

    `lens[b]` counts the committed slots of row b (prompt + committed tokens). Everything at or
    beyond `lens[b]` is scratch. Shapes never change, so decode steps can be graph-captured.
    """

    def __init__(self, config: ModelConfig, batch: int, max_len: int, *, dtype: torch.dtype,
                 device: torch.device | str):
        shape = (batch, config.num_key_value_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.lens = torch.zeros(batch, dtype=torch.long, device=device)
        self.max_len = max_len

    @property
    def batch(self) -> int:
        return self.lens.shape[0]

    def advance(self, n: torch.Tensor | int) -> None:
        """Commit n more slots per row (n: int or [B] tensor); used after causal passes."""
        self.lens += n

    def crop(self, new_lens: torch.Tensor) -> None:
        """Set committed lengths (speculation rolls back to cache_len + accepted)."""
        self.lens.copy_(new_lens)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Drop finished rows: keep only `rows` (int index tensor), in that order."""
        self.k = [t.index_select(0, rows) for t in self.k]
        self.v = [t.index_select(0, rows) for t in self.v]
        self.lens = self.lens.index_select(0, rows)

    def snapshot(self) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Copies of the committed state (for tests)."""
        return [t.clone() for t in self.k], [t.clone() for t in self.v], self.lens.clone()


class Linear(nn.Linear):
    """A bias-free projection that can carry a LoRA delta: y = W x + scale * B(A(x)) when lora=True."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.lora_A: Optional[nn.Parameter] = None   # [r, in]
        self.lora_B: Optional[nn.Parameter] = None   # [out, r]
        self.lora_scale = 0.0

    def set_lora(self, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        self.lora_A = nn.Parameter(a.to(self.weight), requires_grad=False)
        self.lora_B = nn.Parameter(b.to(self.weight), requires_grad=False)
        self.lora_scale = float(scale)

    def forward(self, x: torch.Tensor, lora: bool = False) -> torch.Tensor:
        y = F.linear(x, self.weight)
        if lora and self.lora_A is not None:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.lora_scale
        return y


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                  config.head_dim)
        h = config.hidden_size
        self.q_proj = Linear(h, self.n_heads * self.head_dim)
        self.k_proj = Linear(h, self.n_kv * self.head_dim)
        self.v_proj = Linear(h, self.n_kv * self.head_dim)
        self.o_proj = Linear(self.n_heads * self.head_dim, h)

    def forward(self, x: torch.Tensor, ctx: "ForwardContext", k_cache: torch.Tensor,
                v_cache: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape                                                   # x: [B, L, hidden]
        q = self.q_proj(x, ctx.lora).view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x, ctx.lora).view(B, L, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x, ctx.lora).view(B, L, self.n_kv, self.head_dim).transpose(1, 2)
        q = apply_rope(q, ctx.cos, ctx.sin) * ctx.q_scale                    # [B, H, L, D]
        k = apply_rope(k, ctx.cos, ctx.sin)                                  # [B, Hkv, L, D]
        # write this chunk's K/V into slots [lens, lens + L) of every row
        k_cache[ctx.row_idx, :, ctx.positions] = k.transpose(1, 2)
        v_cache[ctx.row_idx, :, ctx.positions] = v.transpose(1, 2)
        keys, values = k_cache[:, :, :ctx.kv_len], v_cache[:, :, :ctx.kv_len]  # [B, Hkv, S, D]
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=ctx.mask,
                                             enable_gqa=self.n_kv != self.n_heads)  # [B, H, L, D]
        return self.o_proj(out.transpose(1, 2).reshape(B, L, -1), ctx.lora)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor, lora: bool) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x, lora)) * self.up_proj(x, lora), lora)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, ctx, k_cache, v_cache):
        x = x + self.self_attn(self.input_layernorm(x), ctx, k_cache, v_cache)
        return x + self.mlp(self.post_attention_layernorm(x), ctx.lora)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class ForwardContext:
    """Per-forward tensors shared by all layers (positions, rope tables, mask, LoRA switch)."""

    def __init__(self, model: "NLDModel", input_ids: torch.Tensor, cache: KVCache, mode: AttnMode,
                 lora: bool, kv_len: Optional[int], dtype: torch.dtype):
        B, L = input_ids.shape
        device = input_ids.device
        offs = torch.arange(L, device=device)
        self.positions = cache.lens[:, None] + offs                          # [B, L]
        self.row_idx = torch.arange(B, device=device)[:, None]               # [B, 1]
        self.kv_len = cache.max_len if kv_len is None else kv_len
        # key slot j is visible to query i of row b iff j < lens[b] + (i + 1 if causal else L)
        limit = self.positions + 1 if mode == "causal" else (cache.lens + L)[:, None].expand(B, L)
        slots = torch.arange(self.kv_len, device=device)
        self.mask = (slots[None, None, :] < limit[:, :, None])[:, None]      # [B, 1, L, S]
        self.cos, self.sin = rope_cos_sin(self.positions, model.inv_freq, model.attention_factor, dtype)
        self.q_scale = llama4_query_scale(self.positions, model.config.rope, dtype)  # [B, 1, L, 1]
        self.lora = lora


class NLDModel(nn.Module):
    """encoder (Ministral3-style decoder) + untied `diffusion_head`.

    Logit i is the model's prediction for position i+1 in causal mode and for position i itself in
    bidirectional mode (same-position, LLaDA style); the caller interprets them.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.diffusion_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        inv_freq, self.attention_factor = rope_inv_freq(config.rope, config.head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.has_lora = False

    @property
    def dtype(self) -> torch.dtype:
        return self.diffusion_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.diffusion_head.weight.device

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(self.config, batch, max_len, dtype=self.dtype, device=self.device)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, cache: KVCache, mode: AttnMode = "causal", *,
                commit: bool = False, lora: bool = False, kv_len: Optional[int] = None,
                logits_at: Optional[torch.Tensor] = None) -> torch.Tensor:
        """input_ids [B, L] -> float32 logits [B, L, V] (or [B, V] at `logits_at` [B] indices).

        Positions are cache.lens[b] + arange(L). commit=True advances cache.lens by L afterwards
        (a causal commit); otherwise the cache's committed state is untouched. `kv_len` bounds the
        attended slots (must be >= max(lens) + L); None attends the whole buffer.
        """
        if mode not in ("causal", "bidir"):
            raise ValueError(f"attention mode must be 'causal' or 'bidir', got {mode!r}")
        if lora and not self.has_lora:
            raise ValueError("lora=True but no LoRA adapter is loaded")
        x = self.encoder.embed_tokens(input_ids)                             # [B, L, hidden]
        ctx = ForwardContext(self, input_ids, cache, mode, lora, kv_len, x.dtype)
        for layer, k_cache, v_cache in zip(self.encoder.layers, cache.k, cache.v):
            x = layer(x, ctx, k_cache, v_cache)
        if logits_at is not None:
            x = x[torch.arange(x.shape[0], device=x.device), logits_at]      # [B, hidden]
        logits = self.diffusion_head(self.encoder.norm(x)).float()
        if commit:
            cache.advance(input_ids.shape[1])
        return logits
