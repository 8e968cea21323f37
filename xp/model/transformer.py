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

import os
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from xp.model import kernels
from xp.model.config import ModelConfig
from xp.model.cuda_graphs import KVArena
from xp.model.fused_ops import EAGER_OPS, Ops, compiled_ops
from xp.model.rope import apply_rope, llama4_query_scale, rope_cos_sin, rope_inv_freq

AttnMode = Literal["causal", "bidir"]
KERNEL_MAX_CHUNK = 64   # longest chunk (tokens per row) the Triton kernel path takes; prefill stays on SDPA


class KVCache:
    """Preallocated per-layer K/V buffers [B, kv_heads, max_len, head_dim] and per-row lengths.

    `lens[b]` counts the committed slots of row b (prompt + committed tokens). Everything at or
    beyond `lens[b]` is scratch. Shapes never change, so decode steps can be graph-captured. With
    an `arena` the buffers are views of the model's reusable arena (rows [:batch]) and `graphs`
    holds its captured forwards; buffers are never reallocated, dropping rows compacts in place.
    """

    def __init__(self, config: ModelConfig, batch: int, max_len: int, *, dtype: torch.dtype,
                 device: torch.device | str, arena=None):
        if arena is None:
            shape = (batch, config.num_key_value_heads, max_len, config.head_dim)
            self._k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
            self._v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
            self._lens = torch.zeros(batch, dtype=torch.long, device=device)
            self.graphs = None
        else:
            self._k, self._v, self._lens, self.graphs = arena.k, arena.v, arena.lens, arena.graphs
            max_len = arena.max_len
            arena.lens.zero_()
            arena.hold(self)
        self.max_len = max_len
        self._view_rows(batch)

    def _view_rows(self, n: int) -> None:
        self.k = [t[:n] for t in self._k]
        self.v = [t[:n] for t in self._v]
        self.lens = self._lens[:n]

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
        """Drop finished rows: keep only `rows` (int index tensor), in that order (in place)."""
        n = rows.numel()
        for t in self.k + self.v + [self.lens]:
            t[:n].copy_(t.index_select(0, rows))
        self._view_rows(n)

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

    def forward(self, x: torch.Tensor, lora: bool = False, fast: bool = False) -> torch.Tensor:
        """fast=True (decoding chunks on the kernel path): few-row inputs use the skinny GEMM."""
        y = linear(x, self.weight, fast)
        if lora and self.lora_A is not None:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.lora_scale
        return y


def linear(x: torch.Tensor, weight: torch.Tensor, fast: bool) -> torch.Tensor:
    """x @ weight^T; with fast=True, few rows go through the Triton skinny GEMM where it is faster."""
    if fast:
        flat = x.reshape(-1, x.shape[-1])
        if kernels.skinny_linear_ok(flat, weight):
            return kernels.skinny_linear(flat, weight).view(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight)


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
        self.qkv_weight: Optional[torch.Tensor] = None   # fused [q; k; v] (fast path), params are views of it

    def _qkv(self, x: torch.Tensor, lora: bool, fast: bool) -> torch.Tensor:
        """x [N, hidden] -> [N, (H + 2 Hkv) * D], the q, k and v projections side by side."""
        if self.qkv_weight is not None and not (lora and self.q_proj.lora_A is not None or
                                                lora and self.k_proj.lora_A is not None or
                                                lora and self.v_proj.lora_A is not None):
            return linear(x, self.qkv_weight, fast)
        return torch.cat([self.q_proj(x, lora, fast), self.k_proj(x, lora, fast), self.v_proj(x, lora, fast)], -1)

    def _kernel_forward(self, x: torch.Tensor, ctx: "ForwardContext", k_cache: torch.Tensor,
                        v_cache: torch.Tensor) -> torch.Tensor:
        """The decoding-chunk path: qkv GEMM, one RoPE + K/V-write kernel, split-KV attention."""
        B, L, _ = x.shape
        qkv = self._qkv(x.reshape(B * L, -1), ctx.lora, True)
        q = kernels.rope_write_kv(qkv, ctx.cos_flat, ctx.sin_flat, ctx.q_scale_flat, ctx.lens, k_cache, v_cache,
                                  L=L, n_heads=self.n_heads, n_kv=self.n_kv, head_dim=self.head_dim)
        out = kernels.chunk_attention(q.view(B, L, self.n_heads, self.head_dim), k_cache, v_cache, ctx.lens,
                                      kv_len=ctx.kv_len, causal=ctx.causal, sm_scale=self.head_dim ** -0.5)
        return self.o_proj(out.view(B, L, -1), ctx.lora, True)

    def forward(self, x: torch.Tensor, ctx: "ForwardContext", k_cache: torch.Tensor,
                v_cache: torch.Tensor) -> torch.Tensor:
        if ctx.kernels:
            return self._kernel_forward(x, ctx, k_cache, v_cache)
        B, L, _ = x.shape                                                   # x: [B, L, hidden]
        Hkv, D = self.n_kv, self.head_dim
        N = B * L
        q, k, v = self._qkv(x.reshape(N, -1), ctx.lora, False).split(
            [self.n_heads * D, Hkv * D, Hkv * D], dim=-1)
        q, k, v = q.view(N, self.n_heads, D), k.view(N, Hkv, D), v.view(N, Hkv, D)
        q, k = ctx.ops.rope_qk(q, k, ctx.cos, ctx.sin, ctx.q_scale)        # [N, H, D], [N, Hkv, D]
        # write this chunk's K/V into slots [lens, lens + L) of every row
        k_cache[ctx.row_idx, :, ctx.positions] = k.view(B, L, Hkv, D)
        v_cache[ctx.row_idx, :, ctx.positions] = v.view(B, L, Hkv, D)
        out = grouped_sdpa(q.view(B, L, self.n_heads, D), k_cache[:, :, :ctx.kv_len], v_cache[:, :, :ctx.kv_len],
                           ctx.mask)
        return self.o_proj(out, ctx.lora)


def grouped_sdpa(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q [B, L, H, D] over keys/values [B, Hkv, S, D] with an `additive_mask` -> [B, L, H * D].

    Grouped-query attention without expanding K/V: the G query heads of a KV head become L*G query
    rows of that head (head h = kv * G + g, rows ordered (l, g))."""
    B, L, H, D = q.shape
    Hkv = keys.shape[1]
    G = H // Hkv
    q = q.view(B, L, Hkv, G, D).transpose(1, 2).reshape(B, Hkv, L * G, D)
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # [B, Hkv, L*G, D]
    return out.view(B, Hkv, L, G, D).transpose(1, 2).reshape(B, L, H * D)


def additive_mask(lens: torch.Tensor, L: int, kv_len: int, groups: int, causal: bool,
                  dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, L*G, S] additive mask for `grouped_sdpa`, one row per grouped query (l, g): key slot j
    is visible to query l of row b iff j < lens[b] + (l + 1 if causal else L)."""
    B, device = lens.shape[0], lens.device
    positions = lens[:, None] + torch.arange(L, device=device)
    limit = positions + 1 if causal else (lens + L)[:, None].expand(B, L)
    visible = torch.arange(kv_len, device=device)[None, None, None, :] < limit[:, None, :, None]   # [B, 1, L, S]
    additive = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, float("-inf"))
    return additive[:, :, :, None].expand(B, 1, L, groups, kv_len).reshape(B, 1, L * groups, kv_len)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size)
        self.gate_up_weight: Optional[torch.Tensor] = None   # fused, rows alternating gate, up (fast path)

    def forward(self, x: torch.Tensor, lora: bool, ops: Ops = EAGER_OPS, fast: bool = False) -> torch.Tensor:
        if self.gate_up_weight is not None and not (lora and (self.gate_proj.lora_A is not None
                                                              or self.up_proj.lora_A is not None)):
            flat = x.reshape(-1, x.shape[-1])                # fused rows alternate gate, up
            if fast and kernels.skinny_linear_ok(flat, self.gate_up_weight):   # SwiGLU in the GEMM's epilogue
                h = kernels.skinny_linear(flat, self.gate_up_weight, swiglu=True)
                return self.down_proj(h.view(*x.shape[:-1], -1), lora, fast)
            gate_up = F.linear(x, self.gate_up_weight)
            gate, up = gate_up[..., 0::2], gate_up[..., 1::2]
        else:
            gate, up = self.gate_proj(x, lora, fast), self.up_proj(x, lora, fast)
        return self.down_proj(ops.silu_mul(gate, up), lora, fast)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, delta, ctx, k_cache, v_cache):
        """x: residual stream; delta: the previous block's MLP output, not yet added (None in the
        first block; adding it here fuses the add with the norm). Returns (x, this block's MLP output)."""
        ops, n1, n2 = ctx.ops, self.input_layernorm, self.post_attention_layernorm
        h = ops.rms_norm(x, n1.weight, n1.eps) if delta is None else None
        if delta is not None:
            x, h = ops.add_rms_norm(x, delta, n1.weight, n1.eps)
        x, h = ops.add_rms_norm(x, self.self_attn(h, ctx, k_cache, v_cache), n2.weight, n2.eps)
        return x, self.mlp(h, ctx.lora, ops, ctx.kernels)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class ForwardContext:
    """Per-forward tensors shared by all layers (positions, rope tables, mask, LoRA switch, ops).

    Everything is computed on the device from `cache.lens`, without host syncs, so the whole
    forward can be captured in a CUDA graph.
    """

    def __init__(self, model: "NLDModel", input_ids: torch.Tensor, cache: KVCache, mode: AttnMode,
                 lora: bool, kv_len: Optional[int], dtype: torch.dtype):
        B, L = input_ids.shape
        device = input_ids.device
        offs = torch.arange(L, device=device)
        self.lens = cache.lens
        self.causal = mode == "causal"
        self.positions = cache.lens[:, None] + offs                          # [B, L]
        self.row_idx = torch.arange(B, device=device)[:, None]               # [B, 1]
        self.kv_len = cache.max_len if kv_len is None else kv_len
        # decoding chunks on CUDA run the Triton kernels, which derive visibility from `lens` themselves
        self.kernels = model.use_kernels(input_ids)
        groups = model.config.num_attention_heads // model.config.num_key_value_heads
        self.mask = None if self.kernels else additive_mask(cache.lens, L, self.kv_len, groups, self.causal, dtype)
        cos, sin = rope_cos_sin(self.positions, model.inv_freq, model.attention_factor, dtype)
        self.cos, self.sin = cos.reshape(B * L, 1, -1), sin.reshape(B * L, 1, -1)   # [N, 1, D]
        self.q_scale = llama4_query_scale(self.positions, model.config.rope, dtype).reshape(B * L, 1, 1)
        self.cos_flat, self.sin_flat = self.cos.view(B * L, -1), self.sin.view(B * L, -1)
        self.q_scale_flat = self.q_scale.view(B * L)
        self.lora = lora
        self.ops = model.ops


@dataclass
class FastOptions:
    """CUDA fast path switches (all on by default; `NLD_FAST=0` turns all off, `NLD_CUDA_GRAPHS=0`
    / `NLD_COMPILE=0` / `NLD_FUSE=0` / `NLD_KERNELS=0` one each). The CPU path never uses them."""

    cuda_graphs: bool = True     # capture fixed-shape decoding forwards (engine caches only)
    compile: bool = True         # fused elementwise kernels through torch.compile
    fuse_weights: bool = True    # one GEMM for q/k/v and one for gate/up
    kernels: bool = True         # Triton kernels for decoding chunks (xp/model/kernels.py)
    arena_on_cpu: bool = False   # tests only: run the arena + graph bookkeeping eagerly on CPU

    @classmethod
    def from_env(cls) -> "FastOptions":
        def on(name: str) -> bool:
            return os.environ.get("NLD_FAST", "1") != "0" and os.environ.get(name, "1") != "0"
        return cls(cuda_graphs=on("NLD_CUDA_GRAPHS"), compile=on("NLD_COMPILE"), fuse_weights=on("NLD_FUSE"),
                   kernels=on("NLD_KERNELS"))


def _fuse(*linears: Linear) -> torch.Tensor:
    """Concatenate the weights of `linears` into one tensor and make each weight a view of it."""
    fused = torch.cat([lin.weight.detach() for lin in linears])
    offset = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight = nn.Parameter(fused[offset:offset + n], requires_grad=False)
        offset += n
    return fused


def _fuse_interleaved(gate: Linear, up: Linear) -> torch.Tensor:
    """One [2N, K] weight with rows gate0, up0, gate1, ... (so a GEMM tile holds matching gate and up
    rows and can apply SwiGLU itself); the two weights become strided views of it."""
    fused = kernels.interleave_rows(gate.weight.detach(), up.weight.detach())
    gate.weight = nn.Parameter(fused[0::2], requires_grad=False)
    up.weight = nn.Parameter(fused[1::2], requires_grad=False)
    return fused


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
        self.fast = FastOptions.from_env()
        self.ops: Ops = EAGER_OPS
        self._fast_ready = False
        self._arena = None

    @property
    def dtype(self) -> torch.dtype:
        return self.diffusion_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.diffusion_head.weight.device

    def new_cache(self, batch: int, max_len: int, *, reuse: bool = False) -> KVCache:
        """A cache for `batch` rows of up to `max_len` slots.

        reuse=True (the engines) on CUDA hands out views of a reusable arena whose captured CUDA
        graphs survive across calls; one such cache may be alive at a time (a second gets a plain one).
        """
        on_arena = reuse and (self.device.type == "cuda" or self.fast.arena_on_cpu)
        if not on_arena:
            return KVCache(self.config, batch, max_len, dtype=self.dtype, device=self.device)
        self.prepare_fast()
        arena = self._arena
        if arena is not None and arena.busy:
            return KVCache(self.config, batch, max_len, dtype=self.dtype, device=self.device)
        if arena is None or not arena.fits(batch, max_len):
            size = (batch, max_len) if arena is None else (max(batch, arena.batch), max(max_len, arena.max_len))
            self._arena = arena = None   # free the old buffers and graphs first
            self._arena = arena = KVArena(self.config, size[0], -(-size[1] // 256) * 256, dtype=self.dtype,
                                          device=self.device,
                                          capture=self.fast.cuda_graphs and self.device.type == "cuda")
        return KVCache(self.config, batch, max_len, dtype=self.dtype, device=self.device, arena=arena)

    @torch.no_grad()
    def prepare_fast(self) -> None:
        """Switch on the CUDA fast path once (compiled ops, fused projection weights)."""
        if self._fast_ready or self.device.type != "cuda":
            return
        self._fast_ready = True
        if self.fast.compile:
            self.ops = compiled_ops()
        if self.fast.fuse_weights:
            self.fuse_projections()

    @torch.no_grad()
    def fuse_projections(self) -> None:
        """q/k/v as one GEMM and gate/up as one (rows interleaved); the parameters become views."""
        for layer in self.encoder.layers:
            if layer.self_attn.qkv_weight is None:
                layer.self_attn.qkv_weight = _fuse(layer.self_attn.q_proj, layer.self_attn.k_proj,
                                                   layer.self_attn.v_proj)
                layer.mlp.gate_up_weight = _fuse_interleaved(layer.mlp.gate_proj, layer.mlp.up_proj)

    def use_kernels(self, input_ids: torch.Tensor) -> bool:
        """Run this forward on the Triton kernels? Decoding chunks (<= 64 tokens) once the fast path is on."""
        return (self.fast.kernels and (self._fast_ready or self.fast.arena_on_cpu)
                and input_ids.shape[1] <= KERNEL_MAX_CHUNK and kernels.available(input_ids))

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, cache: KVCache, mode: AttnMode = "causal", *,
                commit: bool = False, lora: bool = False, kv_len: Optional[int] = None,
                logits_at: Optional[torch.Tensor] = None, graph: bool = True) -> torch.Tensor:
        """input_ids [B, L] -> float32 logits [B, L, V] (or [B, V] at `logits_at` [B] indices).

        Positions are cache.lens[b] + arange(L). commit=True advances cache.lens by L afterwards
        (a causal commit); otherwise the cache's committed state is untouched. `kv_len` bounds the
        attended slots (must be >= max(lens) + L); None attends the whole buffer. On an arena cache
        (CUDA) small chunks replay captured graphs (graph=False: run eagerly, e.g. a one-off
        prefill); replayed logits stay valid until the next forward on that cache.
        """
        if mode not in ("causal", "bidir"):
            raise ValueError(f"attention mode must be 'causal' or 'bidir', got {mode!r}")
        if lora and not self.has_lora:
            raise ValueError("lora=True but no LoRA adapter is loaded")
        logits = None
        if graph and cache.graphs is not None:
            logits = cache.graphs.run(self, cache, input_ids, mode, lora, kv_len, logits_at)
        if logits is None:
            logits = self._forward(input_ids, cache, mode, lora, kv_len, logits_at)
        if commit:
            cache.advance(input_ids.shape[1])
        return logits

    def _forward(self, input_ids: torch.Tensor, cache: KVCache, mode: AttnMode, lora: bool,
                 kv_len: Optional[int], logits_at: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.encoder.embed_tokens(input_ids)                             # [B, L, hidden]
        ctx = ForwardContext(self, input_ids, cache, mode, lora, kv_len, x.dtype)
        delta = None
        for layer, k_cache, v_cache in zip(self.encoder.layers, cache.k, cache.v):
            x, delta = layer(x, delta, ctx, k_cache, v_cache)
        norm = self.encoder.norm
        _, h = self.ops.add_rms_norm(x, delta, norm.weight, norm.eps)
        if logits_at is not None:
            h = h[torch.arange(h.shape[0], device=h.device), logits_at]      # [B, hidden]
        return linear(h, self.diffusion_head.weight, ctx.kernels).float()
