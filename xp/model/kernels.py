"""Triton kernels for the decoding forwards (chunks of up to 64 tokens over the KV cache).

A batch-1 decode step of the 8B reads ~16 GB of weights; everything else must cost next to nothing.
Three kernels replace what generic PyTorch ops did in 5-8 launches each:

- `rope_write_kv`: RoPE (+ Llama-4 query scale) on q and k straight out of the fused qkv GEMM, and
  the chunk's K/V written into the cache at each row's own slots `lens[b] + l`; one launch.
- `chunk_attention`: split-KV ("flash-decoding") attention of a chunk's queries over the cache. The
  key range is cut into splits so that even one row with 8 KV heads fills the GPU; the causal /
  bidirectional visibility is computed from `lens` in the kernel (no mask tensor), and splits beyond
  the longest row's visible keys exit at once. The G query heads of a KV head are G query rows of one
  tile, so K/V are read once per KV head. A second small kernel merges the splits.
- `skinny_linear`: y = x W^T for few rows, where cuBLAS leaves bandwidth unused: one row streams the
  weights through CUDA cores (4.1-4.5 TB/s on the 8B's large projections on an H200, cuBLAS 3.7-4.2);
  2-32 rows use tensor cores with the weight tile as the wide operand, on the shapes where that
  measured faster than cuBLAS (`MM_CONFIGS`).

`available()` says whether they can run (Triton importable, CUDA tensors or the Triton interpreter);
callers keep their PyTorch path otherwise. The attention kernels take fp32 too, with exact (IEEE)
dot products, so the fp32 fast path matches the eager one up to summation order; fp32 projections
stay on cuBLAS.
"""

from __future__ import annotations

import functools
import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch path is used
    triton = None
    tl = None

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_LOG2E = 1.4426950408889634


def available(t: torch.Tensor) -> bool:
    """Can the kernels run on tensors like `t`? (CUDA + Triton, or the Triton CPU interpreter)."""
    if triton is None:
        return False
    return t.is_cuda or (_INTERPRET and t.device.type == "cpu")


def _dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


if triton is not None:

    @triton.jit
    def _swiglu(gate, up, dtype: tl.constexpr):
        """silu(gate) * up from fp32 accumulators, rounded to `dtype` first as an unfused GEMM would."""
        g = gate.to(dtype).to(tl.float32)
        return (g / (1.0 + tl.exp(-g)) * up.to(dtype).to(tl.float32)).to(dtype)

    @triton.jit
    def _rope_write_kv_kernel(QKV, COS, SIN, QSCALE, LENS, QOUT, KC, VC,
                              s_qkv, s_cs, s_qo_n, s_qo_h,
                              s_kb, s_kh, s_ks, s_vb, s_vh, s_vs,
                              L, S, H: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr):
        n = tl.program_id(0)            # token index b * L + l
        h = tl.program_id(1)            # head among [q heads | k heads | v heads]
        b = n // L
        pos = tl.load(LENS + b) + n % L
        half = tl.arange(0, D // 2)
        inside = (pos + half * 0) < S             # a slot past the cache is never written (no stray stores)
        src = QKV + n * s_qkv + h * D
        x1 = tl.load(src + half).to(tl.float32)
        x2 = tl.load(src + D // 2 + half).to(tl.float32)
        if h < H + HKV:                 # q or k: rotate-half RoPE
            c1 = tl.load(COS + n * s_cs + half).to(tl.float32)
            c2 = tl.load(COS + n * s_cs + D // 2 + half).to(tl.float32)
            s1 = tl.load(SIN + n * s_cs + half).to(tl.float32)
            s2 = tl.load(SIN + n * s_cs + D // 2 + half).to(tl.float32)
            y1 = x1 * c1 - x2 * s1
            y2 = x2 * c2 + x1 * s2
            if h < H:
                scale = tl.load(QSCALE + n).to(tl.float32)
                dst = QOUT + n * s_qo_n + h * s_qo_h
                tl.store(dst + half, (y1 * scale).to(QOUT.dtype.element_ty))
                tl.store(dst + D // 2 + half, (y2 * scale).to(QOUT.dtype.element_ty))
            else:
                dst = KC + b * s_kb + (h - H) * s_kh + pos * s_ks
                tl.store(dst + half, y1.to(KC.dtype.element_ty), mask=inside)
                tl.store(dst + D // 2 + half, y2.to(KC.dtype.element_ty), mask=inside)
        else:                           # v: copied into the cache
            dst = VC + b * s_vb + (h - H - HKV) * s_vh + pos * s_vs
            tl.store(dst + half, x1.to(VC.dtype.element_ty), mask=inside)
            tl.store(dst + D // 2 + half, x2.to(VC.dtype.element_ty), mask=inside)

    @triton.jit
    def _attn_split_kernel(Q, K, V, LENS, OP, MP, LP,
                           s_qb, s_ql, s_qh, s_kb, s_kh, s_ks, s_vb, s_vh, s_vs,
                           L, R, HKV, CHUNK, n_splits, qk_scale,
                           G: tl.constexpr, D: tl.constexpr, CAUSAL: tl.constexpr,
                           BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, PRECISION: tl.constexpr):
        bh = tl.program_id(0)           # b * HKV + kv head
        rblk = tl.program_id(1)
        split = tl.program_id(2)
        b = bh // HKV
        kvh = bh % HKV
        rows = rblk * BLOCK_R + tl.arange(0, BLOCK_R)     # query row r = l * G + g
        row_ok = rows < R
        l_idx = rows // G
        head = kvh * G + rows % G
        d = tl.arange(0, D)
        q = tl.load(Q + b * s_qb + l_idx[:, None] * s_ql + head[:, None] * s_qh + d[None, :],
                    mask=row_ok[:, None], other=0.0)
        base = tl.load(LENS + b)
        if CAUSAL:
            limit = base + l_idx + 1                      # keys < limit are visible to the row
        else:
            limit = base + L + l_idx * 0
        start = split * CHUNK
        stop = tl.minimum(start + CHUNK, base + L)        # nothing past the last visible key
        m_i = tl.full([BLOCK_R], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_R], tl.float32)
        acc = tl.zeros([BLOCK_R, D], tl.float32)
        for s0 in range(start, stop, BLOCK_S):
            slots = s0 + tl.arange(0, BLOCK_S)
            k = tl.load(K + b * s_kb + kvh * s_kh + slots[:, None] * s_ks + d[None, :],
                        mask=(slots < stop)[:, None], other=0.0)
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            visible = (slots[None, :] < limit[:, None]) & (slots[None, :] < stop)
            scores = tl.where(visible, scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp2(scores - m_safe[:, None])
            alpha = tl.exp2(m_i - m_safe)
            v = tl.load(V + b * s_vb + kvh * s_vh + slots[:, None] * s_vs + d[None, :],
                        mask=(slots < stop)[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            l_i = l_i * alpha + tl.sum(p, 1)
            m_i = m_new
        part = (bh * n_splits + split) * R + rows
        tl.store(OP + part[:, None] * D + d[None, :], acc, mask=row_ok[:, None])
        tl.store(MP + part, m_i, mask=row_ok)
        tl.store(LP + part, l_i, mask=row_ok)

    @triton.jit
    def _attn_merge_kernel(OP, MP, LP, OUT, s_ob, s_ol, s_oh, R, HKV, n_splits,
                           G: tl.constexpr, D: tl.constexpr, NS: tl.constexpr):
        """One query row per program: all its splits are loaded at once and merged."""
        pid = tl.program_id(0)           # (b * HKV + kv head) * R + row
        bh = pid // R
        r = pid % R
        s = tl.arange(0, NS)
        ok = s < n_splits
        part = (bh * n_splits + s) * R + r
        m = tl.load(MP + part, mask=ok, other=float("-inf"))
        m_tot = tl.max(m, 0)
        w = tl.exp2(m - tl.where(m_tot == float("-inf"), 0.0, m_tot))
        l_tot = tl.sum(w * tl.load(LP + part, mask=ok, other=0.0), 0)
        d = tl.arange(0, D)
        o = tl.load(OP + part[:, None] * D + d[None, :], mask=ok[:, None], other=0.0)
        out = tl.sum(w[:, None] * o, 0) / tl.where(l_tot == 0.0, 1.0, l_tot)
        b = bh // HKV
        head = (bh % HKV) * G + r % G
        tl.store(OUT + b * s_ob + (r // G) * s_ol + head * s_oh + d, out.to(OUT.dtype.element_ty))

    @triton.jit
    def _skinny_mm_kernel(X, W, Y, M, N, K, s_xm, s_wn, s_ym, SWIGLU: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
        """Y[M, N] = X[M, K] @ W[N, K]^T, computed as Y^T = W X^T so that the weight tile is the wide
        side of the tensor-core product.
        K must be a multiple of BLOCK_K and N of BLOCK_N (checked by the caller)."""
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        m_ok = (rm < M)[:, None]
        acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            w = tl.load(W + rn[:, None] * s_wn + (k0 + rk)[None, :])
            x = tl.load(X + rm[:, None] * s_xm + (k0 + rk)[None, :], mask=m_ok, other=0.0)
            acc += tl.dot(w, tl.trans(x), input_precision=PRECISION)
        if SWIGLU:   # rows of W alternate gate, up: Y[:, j] = silu(gate_j) * up_j
            gate, up = tl.split(tl.permute(tl.reshape(acc, [BLOCK_N // 2, 2, BLOCK_M]), (0, 2, 1)))
            rh = pid_n * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
            tl.store(Y + rm[None, :] * s_ym + rh[:, None], _swiglu(gate, up, Y.dtype.element_ty),
                     mask=(rm < M)[None, :])
        else:
            tl.store(Y + rm[None, :] * s_ym + rn[:, None], acc.to(Y.dtype.element_ty), mask=(rm < M)[None, :])

    @triton.jit
    def _gemv_kernel(X, W, Y, N, K, s_wn, SWIGLU: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """One-row Y[N] = x[K] . W[N, K]^T without tensor cores: a pure weight stream."""
        pid_n = tl.program_id(0)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            w = tl.load(W + rn[:, None] * s_wn + (k0 + rk)[None, :])
            x = tl.load(X + k0 + rk).to(tl.float32)
            acc += w.to(tl.float32) * x[None, :]
        y = tl.sum(acc, 1)
        if SWIGLU:
            gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
            tl.store(Y + pid_n * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2), _swiglu(gate, up, Y.dtype.element_ty))
        else:
            tl.store(Y + rn, y.to(Y.dtype.element_ty))


def rope_write_kv(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_scale: torch.Tensor,
                  lens: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, *, L: int,
                  n_heads: int, n_kv: int, head_dim: int) -> torch.Tensor:
    """qkv [B*L, (H + 2 Hkv) * D] -> rotated, scaled q [B*L, H, D]; writes K/V at lens[b] + l.

    cos/sin [B*L, D] (YaRN factor included), q_scale [B*L]; caches [B, Hkv, S, D] (last dim contiguous)."""
    N = qkv.shape[0]
    q = torch.empty((N, n_heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    _rope_write_kv_kernel[(N, n_heads + 2 * n_kv)](
        qkv, cos, sin, q_scale, lens, q, k_cache, v_cache,
        qkv.stride(0), cos.stride(0), q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        L, k_cache.shape[2], H=n_heads, HKV=n_kv, D=head_dim)
    return q


@functools.lru_cache(maxsize=8)
def _sm_count(device_index: int) -> int:
    if _INTERPRET or not torch.cuda.is_available():
        return 4
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _split_plan(bh: int, row_blocks: int, kv_len: int, block_s: int, sms: int,
                forced: int | None = None) -> tuple[int, int]:
    """(n_splits, keys per split): about two programs per SM, at least two key blocks per split."""
    blocks = -(-kv_len // block_s)
    if forced:
        n_splits = max(1, min(forced, blocks, 64))
    else:
        want = max(1, (2 * sms) // max(1, bh * row_blocks))
        n_splits = max(1, min(want, blocks // 2 if blocks >= 4 else 1, 64))
    chunk = -(-blocks // n_splits) * block_s
    return -(-kv_len // chunk), chunk


def chunk_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lens: torch.Tensor, *,
                    kv_len: int, causal: bool, sm_scale: float, n_splits: int | None = None) -> torch.Tensor:
    """q [B, L, H, D] (positions lens[b] + l) over cache slots [0, kv_len) -> out [B, L, H, D].

    causal: query l sees slots < lens[b] + l + 1; bidirectional: slots < lens[b] + L. The chunk's own
    K/V must already be in the cache. `kv_len` is an upper bound (>= max(lens) + L). `n_splits`
    overrides the number of key splits (benchmarks, tests)."""
    B, L, H, D = q.shape
    HKV = k_cache.shape[1]
    G = H // HKV
    R = L * G
    block_r = 16 if R <= 16 else (32 if R <= 32 else 64)
    block_s = 64
    row_blocks = -(-R // block_r)
    n_splits, chunk = _split_plan(B * HKV, row_blocks, kv_len, block_s, _sm_count(q.device.index or 0), n_splits)
    f32 = dict(dtype=torch.float32, device=q.device)
    o_part = torch.empty((B * HKV * n_splits * R, D), **f32)
    m_part = torch.empty((B * HKV * n_splits * R,), **f32)
    l_part = torch.empty((B * HKV * n_splits * R,), **f32)
    _attn_split_kernel[(B * HKV, row_blocks, n_splits)](
        q, k_cache, v_cache, lens, o_part, m_part, l_part,
        q.stride(0), q.stride(1), q.stride(2),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        L, R, HKV, chunk, n_splits, sm_scale * _LOG2E,
        G=G, D=D, CAUSAL=causal, BLOCK_R=block_r, BLOCK_S=block_s,
        PRECISION=_dot_precision(q.dtype), num_warps=4, num_stages=2)
    out = torch.empty_like(q)
    _attn_merge_kernel[(B * HKV * R,)](
        o_part, m_part, l_part, out, out.stride(0), out.stride(1), out.stride(2), R, HKV, n_splits,
        G=G, D=D, NS=max(2, triton.next_power_of_2(n_splits)), num_warps=4)
    return out


# Tile configs (BLOCK_N, BLOCK_K, num_warps, num_stages): the fastest of `bench/kernels.py --sweep`
# on an H200 for the 8B projections. One row: by weight shape (N, K) = q/k/v, o, gate/up, down, head.
GEMV_CONFIGS = {(6144, 4096): (16, 512, 8, 1), (4096, 4096): (8, 512, 4, 1), (28672, 4096): (16, 256, 4, 3),
                (4096, 14336): (16, 1024, 8, 3), (131072, 4096): (16, 256, 4, 3)}
GEMV_DEFAULT = (16, 512, 4, 3)
# 2-64 rows: by (BLOCK_M, N, K), only where the sweep beat cuBLAS; every other product stays on cuBLAS.
MM_CONFIGS = {
    (16, 6144, 4096): (64, 256, 4, 4), (16, 4096, 4096): (64, 128, 4, 4), (16, 28672, 4096): (256, 128, 8, 3),
    (16, 4096, 14336): (64, 256, 4, 5), (16, 131072, 4096): (64, 128, 4, 4),
    (32, 6144, 4096): (64, 128, 4, 5), (32, 4096, 4096): (64, 128, 4, 5), (32, 28672, 4096): (256, 128, 8, 3),
    (32, 4096, 14336): (64, 256, 4, 4), (32, 131072, 4096): (256, 128, 4, 3)}
MM_DEFAULT = (128, 128, 4, 4)


def _block_m(M: int) -> int:
    return 16 if M <= 16 else (32 if M <= 32 else 64)


def skinny_linear_ok(x: torch.Tensor, w: torch.Tensor, any_shape: bool = False) -> bool:
    """Does the skinny GEMM take (and win on) x @ w^T? One row always; 2-64 rows only for the shapes
    in MM_CONFIGS (any_shape=True: every shape it can run, for benchmarks). Needs bf16/fp16 (fp32
    stays on cuBLAS), contiguous rows, K a multiple of 1024 and N of 256."""
    M, (N, K) = x.shape[0], w.shape
    if not (available(x) and x.dim() == 2 and x.dtype == w.dtype and x.dtype in (torch.bfloat16, torch.float16)
            and x.stride(1) == 1 and w.stride(1) == 1 and K % 1024 == 0 and N % 256 == 0 and x.shape[1] == K):
        return False
    return M == 1 or (M <= 64 and (any_shape or (_block_m(M), N, K) in MM_CONFIGS))


def skinny_linear(x: torch.Tensor, w: torch.Tensor, *, swiglu: bool = False,
                  config: tuple | None = None) -> torch.Tensor:
    """x [M, K] @ w[N, K]^T -> [M, N] for M <= 64 (see skinny_linear_ok).

    swiglu=True: the rows of w alternate gate and up projections (`interleave_rows`); the result is
    silu(gate) * up, [M, N/2], formed in the GEMM's epilogue."""
    M, N, K = x.shape[0], w.shape[0], w.shape[1]
    y = torch.empty((M, N // 2 if swiglu else N), dtype=x.dtype, device=x.device)
    if M == 1:
        bn, bk, warps, stages = config or GEMV_CONFIGS.get((N, K), GEMV_DEFAULT)
        _gemv_kernel[(N // bn,)](x, w, y, N, K, w.stride(0), SWIGLU=swiglu, BLOCK_N=bn, BLOCK_K=bk,
                                 num_warps=warps, num_stages=stages)
        return y
    bm = _block_m(M)
    bn, bk, warps, stages = config or MM_CONFIGS.get((bm, N, K), MM_DEFAULT)
    _skinny_mm_kernel[(N // bn, -(-M // bm))](
        x, w, y, M, N, K, x.stride(0), w.stride(0), y.stride(0), SWIGLU=swiglu, BLOCK_M=bm, BLOCK_N=bn,
        BLOCK_K=bk, PRECISION=_dot_precision(x.dtype), num_warps=warps, num_stages=stages)
    return y


def interleave_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, K], [N, K] -> [2N, K] with rows a0, b0, a1, b1, ... (the layout `swiglu=True` reads)."""
    return torch.stack([a, b], dim=1).reshape(2 * a.shape[0], a.shape[1])


def reference_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lens: torch.Tensor, *,
                        kv_len: int, causal: bool, sm_scale: float) -> torch.Tensor:
    """PyTorch reference for `chunk_attention` (tests and the benchmark's check), fp32 math."""
    B, L, H, D = q.shape
    G = H // k_cache.shape[1]
    k = k_cache[:, :, :kv_len].float().repeat_interleave(G, dim=1)        # [B, H, S, D]
    v = v_cache[:, :, :kv_len].float().repeat_interleave(G, dim=1)
    scores = torch.einsum("blhd,bhsd->bhls", q.float(), k) * sm_scale
    pos = lens[:, None] + torch.arange(L, device=q.device)                 # [B, L]
    limit = pos + 1 if causal else (lens + L)[:, None].expand(B, L)
    visible = torch.arange(kv_len, device=q.device)[None, None, :] < limit[:, :, None]   # [B, L, S]
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    return torch.einsum("bhls,bhsd->blhd", scores.softmax(-1), v).to(q.dtype)


def default_sm_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
