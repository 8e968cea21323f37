"""The decoding kernels (`xp/model/kernels.py`) against PyTorch on the 8B shapes, on one GPU.

    PYTHONPATH=. python bench/kernels.py --out DIR            # CUDA; prints tables, writes DIR/kernels_bench.json
    PYTHONPATH=. python bench/kernels.py --sweep --out DIR    # also every skinny-GEMM tile config

1. projections y = x W^T of the 8B (q/k/v fused, o, gate/up fused, down, diffusion head) at 1, 8 and
   32 rows: cuBLAS (`F.linear`) against `skinny_linear`, as microseconds and weight-read bandwidth;
   with --sweep, each (BLOCK_N, BLOCK_K, warps, stages) candidate too;
2. chunk attention over a cache of --kv-len slots (8 KV heads, 4 query heads each, head_dim 128):
   SDPA with the additive mask the plain path builds against `chunk_attention`, and the largest
   difference to an fp32 reference;
3. RoPE + K/V write: the PyTorch ops of the plain path against `rope_write_kv` (equality checked).
Times are GPU time per call: 20 calls captured in a CUDA graph (launch cost excluded, as in the
engines), median of 5 replays.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from xp.model import kernels
from xp.model.rope import apply_rope
from xp.model.transformer import additive_mask, grouped_sdpa

HIDDEN, FFN, VOCAB, H, HKV, D = 4096, 14336, 131072, 32, 8, 128
PROJECTIONS = {"qkv": ((H + 2 * HKV) * D, HIDDEN), "o": (HIDDEN, H * D), "gate_up": (2 * FFN, HIDDEN),
               "down": (HIDDEN, FFN), "head": (VOCAB, HIDDEN)}
SWEEP_GEMV = [(bn, bk, w, s) for bn in (8, 16, 32) for bk in (256, 512, 1024) for w in (4, 8) for s in (1, 3)]
SWEEP_MM = [(bn, bk, w, s) for bn in (64, 128, 256) for bk in (64, 128, 256) for w in (4, 8) for s in (3, 4, 5)]
SWEEP_ROWS = (1, 8, 32)   # --sweep tries every config at these row counts


def timed_us(fn: Callable[[], object], iters: int = 20, repeats: int = 5) -> float:
    """GPU microseconds per call: `iters` calls captured in one CUDA graph (as the engines run them,
    so host launch cost is excluded), median over `repeats` replays."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()                        # compile / warm outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(iters):
            fn()
    graph.replay()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) * 1000 / iters)
    return statistics.median(samples)


def bench_projections(rows: list[int], sweep: bool, dtype: torch.dtype, only: list[str]) -> list[dict]:
    out = []
    for name, (n, k) in PROJECTIONS.items():
        if name not in only:
            continue
        w = torch.randn(n, k, device="cuda", dtype=dtype) * 0.02
        gbytes = w.numel() * w.element_size() / 1e9
        for m in rows:
            x = torch.randn(m, k, device="cuda", dtype=dtype)
            ref = F.linear(x, w)
            row = {"proj": name, "rows": m, "cublas_us": timed_us(lambda: F.linear(x, w))}
            if name == "gate_up":   # the model runs it with SwiGLU in the epilogue (rows interleaved)
                row["swiglu_us"] = timed_us(lambda: kernels.skinny_linear(x, w, swiglu=True))
                if sweep and m in SWEEP_ROWS:
                    timings = []
                    for c in (SWEEP_GEMV if m == 1 else SWEEP_MM):
                        try:
                            timings.append((timed_us(lambda: kernels.skinny_linear(x, w, swiglu=True, config=c)), c))
                        except Exception as e:  # a tile config that does not fit this card
                            print(f"  gate_up+swiglu m={m} {c}: {type(e).__name__}", file=sys.stderr)
                    row["swiglu_best"] = min(timings)
                print(f"  gate_up m={m} with SwiGLU epilogue {row['swiglu_us']:.1f} us"
                      + (f", best {row['swiglu_best']}" if "swiglu_best" in row else ""), flush=True)
            candidates = {"default": None}
            if sweep and m in SWEEP_ROWS:
                candidates.update({str(c): c for c in (SWEEP_GEMV if m == 1 else SWEEP_MM)})
            best = None
            for label, cfg in candidates.items():
                try:
                    y = kernels.skinny_linear(x, w, config=cfg)
                    err = (y.float() - ref.float()).abs().max().item()
                    us = timed_us(lambda: kernels.skinny_linear(x, w, config=cfg))
                except Exception as e:  # a tile config that does not compile on this card
                    print(f"  {name} m={m} {label}: {type(e).__name__}", file=sys.stderr)
                    continue
                if label == "default":
                    row.update(skinny_us=us, skinny_err=err)
                if best is None or us < best[1]:
                    best = (label, us)
            row["best_config"], row["best_us"] = best
            for key in ("cublas", "skinny", "best"):
                row[f"{key}_tbs"] = gbytes / (row[f"{key}_us"] * 1e-6) / 1e3
            out.append(row)
            print(f"{name:8s} m={m:3d}  cuBLAS {row['cublas_us']:8.1f} us {row['cublas_tbs']:5.2f} TB/s | "
                  f"skinny {row['skinny_us']:8.1f} us {row['skinny_tbs']:5.2f} TB/s err {row['skinny_err']:.3g} | "
                  f"best {best[0]} {best[1]:.1f} us", flush=True)
        del w
    return out


def sdpa_path(q, kc, vc, lens, kv_len, causal):
    """What the plain path does: additive mask [B, 1, L*G, S] + SDPA with grouped query rows."""
    mask = additive_mask(lens, q.shape[1], kv_len, H // HKV, causal, q.dtype)
    return grouped_sdpa(q, kc[:, :, :kv_len], vc[:, :, :kv_len], mask).view(q.shape)


def bench_attention(cases: list[tuple[int, int, bool]], prompt: int, dtype: torch.dtype) -> list[dict]:
    out = []
    for batch, length, causal in cases:
        kv_len = -(-(prompt + length) // 128) * 128
        kc = torch.randn(batch, HKV, kv_len + 128, D, device="cuda", dtype=dtype)
        vc = torch.randn_like(kc)
        lens = torch.full((batch,), prompt, device="cuda", dtype=torch.long)
        q = torch.randn(batch, length, H, D, device="cuda", dtype=dtype)
        scale = kernels.default_sm_scale(D)
        ref = kernels.reference_attention(q, kc, vc, lens, kv_len=kv_len, causal=causal, sm_scale=scale).float()
        ours = kernels.chunk_attention(q, kc, vc, lens, kv_len=kv_len, causal=causal, sm_scale=scale)
        sdpa = sdpa_path(q, kc, vc, lens, kv_len, causal)
        row = {"batch": batch, "length": length, "causal": causal, "kv_len": kv_len,
               "sdpa_us": timed_us(lambda: sdpa_path(q, kc, vc, lens, kv_len, causal)),
               "ours_us": timed_us(lambda: kernels.chunk_attention(q, kc, vc, lens, kv_len=kv_len,
                                                                    causal=causal, sm_scale=scale)),
               "splits_us": {n: timed_us(lambda: kernels.chunk_attention(q, kc, vc, lens, kv_len=kv_len, causal=causal,
                                                                         sm_scale=scale, n_splits=n))
                             for n in (1, 2, 4, 8, 16)},
               "ours_err": (ours.float() - ref).abs().max().item(),
               "sdpa_err": (sdpa.float() - ref).abs().max().item()}
        out.append(row)
        print(f"attn b{batch} L{length} {'causal' if causal else 'bidir '} kv{kv_len}: SDPA {row['sdpa_us']:7.1f} us "
              f"(err {row['sdpa_err']:.3g}) | ours {row['ours_us']:7.1f} us (err {row['ours_err']:.3g}) | by splits "
              + " ".join(f"{n}:{us:.1f}" for n, us in row["splits_us"].items()), flush=True)
    return out


def bench_rope(batch: int, length: int, prompt: int, dtype: torch.dtype) -> dict:
    n = batch * length
    qkv = torch.randn(n, (H + 2 * HKV) * D, device="cuda", dtype=dtype)
    cos, sin = torch.randn(n, D, device="cuda", dtype=dtype), torch.randn(n, D, device="cuda", dtype=dtype)
    qs = torch.rand(n, device="cuda", dtype=dtype) + 1
    lens = torch.full((batch,), prompt, device="cuda", dtype=torch.long)
    kc = torch.zeros(batch, HKV, prompt + 128, D, device="cuda", dtype=dtype)
    vc = torch.zeros_like(kc)
    rows = torch.arange(batch, device="cuda")[:, None]
    positions = lens[:, None] + torch.arange(length, device="cuda")

    def plain():
        q, k, v = qkv.split([H * D, HKV * D, HKV * D], -1)
        qr = apply_rope(q.view(n, H, D), cos[:, None], sin[:, None]) * qs[:, None, None]
        kr = apply_rope(k.view(n, HKV, D), cos[:, None], sin[:, None])
        kc[rows, :, positions] = kr.view(batch, length, HKV, D)
        vc[rows, :, positions] = v.view(batch, length, HKV, D)
        return qr

    ref_q = plain().float()
    ref_k = kc.clone()
    ours_q = kernels.rope_write_kv(qkv, cos, sin, qs, lens, kc, vc, L=length, n_heads=H, n_kv=HKV, head_dim=D)
    row = {"batch": batch, "length": length, "plain_us": timed_us(plain),
           "ours_us": timed_us(lambda: kernels.rope_write_kv(qkv, cos, sin, qs, lens, kc, vc, L=length, n_heads=H,
                                                             n_kv=HKV, head_dim=D)),
           "q_err": (ours_q.float() - ref_q).abs().max().item(), "k_err": (kc.float() - ref_k.float()).abs().max().item()}
    print(f"rope+kv b{batch} L{length}: plain {row['plain_us']:.1f} us | ours {row['ours_us']:.1f} us "
          f"(q err {row['q_err']:.3g}, k err {row['k_err']:.3g})", flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for kernels_bench.json")
    ap.add_argument("--sweep", action="store_true", help="time every skinny-GEMM tile config too")
    ap.add_argument("--kv-len", type=int, default=1024, help="prompt tokens in the cache")
    ap.add_argument("--projections", default=",".join(PROJECTIONS),
                    help="comma list of " + ", ".join(PROJECTIONS) + " (default: all)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: bench/kernels.py needs a CUDA GPU (the kernels are Triton GPU kernels)")
    torch.manual_seed(0)
    dtype = torch.bfloat16
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    result["projections"] = bench_projections([1, 8, 32], args.sweep, dtype, args.projections.split(","))
    cases = [(1, 1, True), (8, 1, True), (32, 1, True), (1, 8, False), (1, 32, False), (1, 32, True), (8, 32, False)]
    result["attention"] = bench_attention(cases, args.kv_len, dtype)
    result["rope"] = [bench_rope(b, length, args.kv_len, dtype) for b, length in ((1, 1), (1, 32), (32, 1))]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels_bench.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
