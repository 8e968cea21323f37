"""Checks of xp/model/kernels.py, run by tests/test_kernels.py in a subprocess under the Triton CPU
interpreter (TRITON_INTERPRET=1 must be set before Triton is imported, and only these checks should
pay for interpreting). Each check raises AssertionError with the numbers when it fails.

    TRITON_INTERPRET=1 PYTHONPATH=. python tests/kernels_helpers.py attention
"""

from __future__ import annotations

import random
import sys

import torch
import torch.nn.functional as F

from xp.model import kernels
from xp.model.rope import apply_rope


def check_attention() -> None:
    gen = torch.Generator().manual_seed(0)
    B, H, HKV, D, S = 2, 8, 2, 32, 320
    k_cache = torch.randn(B, HKV, S, D, generator=gen)
    v_cache = torch.randn(B, HKV, S, D, generator=gen)
    lens = torch.tensor([37, 250])                      # rows at different lengths
    for L in (1, 3, 8):
        q = torch.randn(B, L, H, D, generator=gen)
        kv_len = 256 + 64 if L > 1 else 256 + 64        # attended slots beyond the longest row are ignored
        for causal in (True, False):
            ref = kernels.reference_attention(q, k_cache, v_cache, lens, kv_len=kv_len, causal=causal, sm_scale=0.2)
            for n_splits in (None, 1, 3):
                out = kernels.chunk_attention(q, k_cache, v_cache, lens, kv_len=kv_len, causal=causal,
                                              sm_scale=0.2, n_splits=n_splits)
                err = (out - ref).abs().max().item()
                assert err < 1e-5, f"L={L} causal={causal} n_splits={n_splits}: max error {err}"


def check_rope_write_kv() -> None:
    gen = torch.Generator().manual_seed(1)
    B, L, H, HKV, D = 2, 3, 4, 2, 16
    qkv = torch.randn(B * L, (H + 2 * HKV) * D, generator=gen)
    cos, sin = torch.randn(B * L, D, generator=gen), torch.randn(B * L, D, generator=gen)
    q_scale = torch.rand(B * L, generator=gen) + 1
    lens = torch.tensor([5, 9])
    k_cache, v_cache = torch.zeros(B, HKV, 32, D), torch.zeros(B, HKV, 32, D)
    q = kernels.rope_write_kv(qkv, cos, sin, q_scale, lens, k_cache, v_cache, L=L, n_heads=H, n_kv=HKV, head_dim=D)
    q_ref, k_ref, v_ref = qkv.split([H * D, HKV * D, HKV * D], -1)
    q_ref = apply_rope(q_ref.view(-1, H, D), cos[:, None], sin[:, None]) * q_scale[:, None, None]
    k_ref = apply_rope(k_ref.view(-1, HKV, D), cos[:, None], sin[:, None])
    assert torch.allclose(q, q_ref, atol=1e-5), f"q differs by {(q - q_ref).abs().max().item()}"
    written = torch.zeros_like(k_cache, dtype=torch.bool)
    for b in range(B):
        for pos in range(L):
            slot = int(lens[b]) + pos
            assert torch.allclose(k_cache[b, :, slot], k_ref[b * L + pos], atol=1e-5), (b, pos)
            assert torch.equal(v_cache[b, :, slot], v_ref[b * L + pos].view(HKV, D)), (b, pos)
            written[b, :, slot] = True
    assert not k_cache[~written].any() and not v_cache[~written].any(), "wrote outside the chunk's slots"
    # a chunk running past the cache's last slot: the slots inside are written, nothing beyond
    k_small, v_small = torch.zeros(B, HKV, 8, D), torch.zeros(B, HKV, 8, D)
    kernels.rope_write_kv(qkv, cos, sin, q_scale, torch.tensor([6, 0]), k_small, v_small, L=L, n_heads=H,
                          n_kv=HKV, head_dim=D)
    assert torch.allclose(k_small[0, :, 6:8], k_ref[0:2].transpose(0, 1), atol=1e-5)
    assert torch.allclose(k_small[1, :, 0:3], k_ref[3:6].transpose(0, 1), atol=1e-5)


def check_skinny_linear() -> None:
    gen = torch.Generator().manual_seed(2)
    N, K = 512, 1024
    w = (torch.randn(N, K, generator=gen) * 0.05).half()
    for M in (1, 5, 20):
        x = torch.randn(M, K, generator=gen).half()
        assert kernels.skinny_linear_ok(x, w, any_shape=True)
        config = (16, 256, 4, 1) if M == 1 else (64, 128, 4, 2)
        y = kernels.skinny_linear(x, w, config=config).float()
        ref = x.float() @ w.float().T
        err = (y - ref).abs().max().item()
        assert err < 0.01, f"M={M}: max error {err}"
        gate, up = w[: N // 2], w[N // 2:]            # SwiGLU epilogue over interleaved gate/up rows
        h = kernels.skinny_linear(x, kernels.interleave_rows(gate, up), swiglu=True, config=config).float()
        g, u = (x.float() @ gate.float().T).half().float(), (x.float() @ up.float().T).half().float()
        err = (h - F.silu(g) * u).abs().max().item()
        assert h.shape == (M, N // 2) and err < 0.01, f"M={M} swiglu: max error {err}"
    assert not kernels.skinny_linear_ok(torch.randn(1, K), w.float())           # fp32 stays on cuBLAS
    assert not kernels.skinny_linear_ok(torch.randn(5, K).half(), w)            # 2+ rows: only tuned shapes


def check_model_kernel_path() -> None:
    """The tiny model's decoding chunks through the kernels equal the plain path (fp32 engines)."""
    sys.path.insert(0, "tests")
    from test_engine_speed import make_bundle
    from xp.dlm_generate import GenerationRequest, get_engine
    from xp.model.transformer import FastOptions
    rng = random.Random(0)
    prompts = [tuple(rng.randrange(10, 900) for _ in range(n)) for n in (5, 17)]
    settings = [("ar_native", {}), ("nemotron", {"block_length": 4, "threshold": 0.0, "linear_speculation": True})]
    for fast in (FastOptions(arena_on_cpu=False, kernels=False), FastOptions(arena_on_cpu=True)):
        bundle = make_bundle(fast)
        assert bundle.model.use_kernels(torch.zeros(1, 1, dtype=torch.long)) == fast.kernels
        out = [[(r.tokens, r.nfe) for r in get_engine(e, bundle).generate(
            [GenerationRequest(prompt_ids=p, max_new_tokens=6 + 3 * i, **s) for i, p in enumerate(prompts)])]
            for e, s in settings]
        if not fast.kernels:
            plain = out
    assert out == plain, f"kernel path {out} != plain path {plain}"


def check_model_skinny_shapes() -> None:
    """A model whose projections the skinny GEMMs take (fp16): one- and 8-token forwards on the kernel
    path (GEMV / few-row GEMM, SwiGLU epilogue, fused RoPE, split-KV attention) match the plain path."""
    from xp.model.tiny import random_model, tiny_config
    from xp.model.transformer import FastOptions
    config = tiny_config(hidden_size=1024, num_attention_heads=8, num_key_value_heads=2, head_dim=128,
                         intermediate_size=1024, num_hidden_layers=1, vocab_size=1024)
    model = random_model(config, seed=3).half().eval()
    model.fuse_projections()
    model.fast = FastOptions(arena_on_cpu=True)
    tuned = dict(kernels.MM_CONFIGS)
    kernels.MM_CONFIGS.update({(16, n, k): (64, 128, 4, 2) for n, k in ((1536, 1024), (1024, 1024), (2048, 1024))})
    try:
        for L in (1, 8):
            ids = torch.randint(10, 1000, (1, L))
            logits = []
            for use in (False, True):
                model.fast.kernels = use
                cache = model.new_cache(1, 64)
                model(torch.randint(10, 1000, (1, 20), generator=torch.Generator().manual_seed(4)), cache,
                      "causal", commit=True)
                logits.append(model(ids, cache, "causal").float())
            err = (logits[0] - logits[1]).abs().max().item() / logits[0].abs().max().item()
            assert err < 0.02, f"L={L}: kernel path differs from the plain path by {err:.4f} (relative)"
    finally:
        kernels.MM_CONFIGS.clear()
        kernels.MM_CONFIGS.update(tuned)


CHECKS = {"attention": check_attention, "rope_write_kv": check_rope_write_kv, "skinny_linear": check_skinny_linear,
          "model_kernel_path": check_model_kernel_path, "model_skinny_shapes": check_model_skinny_shapes}

if __name__ == "__main__":
    CHECKS[sys.argv[1]]()
    print("ok")
