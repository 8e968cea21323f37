"""The fast decoding path (KV arena, graph bookkeeping, fused weights) changes no output.

CPU: the arena + graph bookkeeping runs eagerly (`arena_on_cpu`) and must give token-for-token the
plain path's results in every mode, with rows finishing at different times. CUDA (skipped without
a GPU): graph replays + compiled ops + fused weights against the plain eager path (fp32: equal;
bf16: flips only at near-ties), and greedy linear speculation against greedy AR in bf16.

Run: pytest tests/test_engine_speed.py
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from xp.dlm_generate import GenerationRequest, get_engine
from xp.model.loader import ModelBundle
from xp.model.tiny import random_model, tiny_config
from xp.model.transformer import FastOptions

ROOT = Path(__file__).resolve().parents[1]
MODES = [("ar_native", {}), ("nemotron", {"block_length": 8, "threshold": 0.9}),
         ("nemotron", {"block_length": 4, "threshold": None}),
         ("nemotron", {"block_length": 8, "threshold": 0.0, "linear_speculation": True}),
         ("nemotron", {"block_length": 6, "threshold": 0.5, "linear_speculation": True})]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make_bundle(fast: FastOptions, device: str = "cpu", dtype=torch.float32, seed: int = 5) -> ModelBundle:
    config = tiny_config()
    model = random_model(config, seed=seed).to(device=device, dtype=dtype).eval()
    model.fast = fast
    return ModelBundle(model=model, tokenizer=None, config=config, max_model_len=4096, has_lora=False,
                       eos_token_id=config.eos_token_id, mask_token_id=config.mask_token_id,
                       end_think_token_id=6, name="in-memory")


def requests(settings: dict, **extra) -> list[GenerationRequest]:
    rng = random.Random(0)
    prompts = [tuple(rng.randrange(10, 900) for _ in range(n)) for n in (5, 17, 9)]
    # different budgets: rows leave the batch at different times (in-place compaction)
    return [GenerationRequest(prompt_ids=p, max_new_tokens=12 + 5 * i, **settings, **extra)
            for i, p in enumerate(prompts)]


def run_all(bundle: ModelBundle, **extra) -> list:
    out = []
    for engine, settings in MODES:
        res = get_engine(engine, bundle).generate(requests(settings, **extra))
        out.append([(r.tokens, r.nfe, r.finish_reason, r.token_pass, r.acceptance_lengths) for r in res])
    return out


@pytest.mark.parametrize("extra", [{}, {"temperature": 0.8, "seed": 3}, {"max_thinking_tokens": 4}],
                         ids=["greedy", "sampled", "think-budget"])
def test_arena_path_gives_the_plain_results_on_cpu(extra):
    plain = run_all(make_bundle(FastOptions(arena_on_cpu=False)), **extra)
    fast_bundle = make_bundle(FastOptions(arena_on_cpu=True))
    assert run_all(fast_bundle, **extra) == plain
    graphs = fast_bundle.model._arena.graphs
    assert graphs.graphs and all(k[4] % graphs.kv_step == 0 or k[4] == fast_bundle.model._arena.max_len
                                 for k in graphs.graphs)
    if not extra:   # a second call reuses the arena and its entries
        assert run_all(fast_bundle, **extra) == plain


def test_arena_is_reused_grown_and_not_shared():
    model = make_bundle(FastOptions(arena_on_cpu=True)).model
    first = model.new_cache(2, 40, reuse=True)
    busy = model.new_cache(2, 40, reuse=True)          # first still alive: a plain cache
    assert busy.graphs is None and first.graphs is not None
    arena = model._arena
    del first, busy
    again = model.new_cache(1, 100, reuse=True)
    assert model._arena is arena and again.k[0].data_ptr() == arena.k[0].data_ptr()
    del again
    bigger = model.new_cache(3, 300, reuse=True)
    assert model._arena is not arena and model._arena.batch == 3 and bigger.max_len >= 300


def test_keep_rows_compacts_in_place():
    model = make_bundle(FastOptions()).model
    cache = model.new_cache(3, 16)
    model(torch.randint(0, 900, (3, 5)), cache, "causal", commit=True)
    cache.crop(torch.tensor([3, 4, 5]))
    k1, v1, lens = cache.snapshot()
    ptr = cache.k[0].data_ptr()
    cache.keep_rows(torch.tensor([0, 2]))
    assert cache.k[0].data_ptr() == ptr and cache.batch == 2
    assert torch.equal(cache.k[1], k1[1][[0, 2]]) and torch.equal(cache.v[0], v1[0][[0, 2]])
    assert cache.lens.tolist() == [3, 5]


def test_bench_smoke_on_cpu(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "engine.py"), "--tiny", "--device", "cpu", "--batches", "1",
           "--prompt-len", "8", "--new-tokens", "8", "--iters", "1", "--modes", "ar,linear_spec_b32",
           "--no-baseline", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AR step b1 / bandwidth floor" in proc.stdout
    import json
    result = json.loads((tmp_path / "engine_bench.json").read_text())
    assert result["decode"]["ar/b1"]["tokens"] == 8 and result["latency"]["ar_step/b1"] > 0


def test_bench_rejects_bad_arguments():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), "--modes", "nope", "--tiny"],
                          cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown mode" in proc.stderr


@cuda
@pytest.mark.parametrize("extra", [{}, {"temperature": 0.8, "seed": 3}], ids=["greedy", "sampled"])
def test_cuda_fast_path_matches_eager_in_fp32(extra):
    eager = run_all(make_bundle(FastOptions(cuda_graphs=False, compile=False, fuse_weights=False, kernels=False), "cuda"),
                    **extra)
    fast_bundle = make_bundle(FastOptions(), "cuda")
    fast = run_all(fast_bundle, **extra)
    assert fast_bundle.model._arena.graphs.graphs, "no forward was graph-captured"
    assert fast == eager


def _bf16_tolerance(value: float, ulps: int = 4) -> float:
    """`ulps` bf16 steps at the magnitude of `value` (bf16 keeps 8 significant bits)."""
    return ulps * 2.0 ** (math.floor(math.log2(max(abs(value), 1e-3))) - 7)


@cuda
def test_cuda_bf16_fast_path_differs_from_eager_only_at_near_ties():
    """bf16 logits sit on a coarse grid, so greedy choices can flip between kernels; every flip must be
    a near-tie in the eager model's own logits (the fast path's token within 4 bf16 steps of the top)."""
    eager = make_bundle(FastOptions(cuda_graphs=False, compile=False, fuse_weights=False, kernels=False), "cuda", torch.bfloat16)
    fast = make_bundle(FastOptions(), "cuda", torch.bfloat16)
    reqs = requests({}, max_thinking_tokens=None)
    ref = get_engine("ar_native", eager).generate(reqs)
    got = get_engine("ar_native", fast).generate(reqs)
    flips = []
    for req, a, b in zip(reqs, ref, got):
        if a.tokens == b.tokens:
            continue
        i = next(i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y)
        ids = torch.tensor([list(req.prompt_ids) + a.tokens[:i]], device="cuda")
        logits = eager.model(ids, eager.model.new_cache(1, ids.shape[1]), "causal")[0, -1]
        top = logits.max().item()
        flips.append((i, top - logits[b.tokens[i]].item()))
        assert top - logits[b.tokens[i]].item() <= _bf16_tolerance(top), (i, flips)
    print(f"bf16 greedy flips (first divergence index, eager logit gap): {flips}")


@cuda
def test_cuda_greedy_speculation_equals_greedy_ar_in_bf16():
    bundle = make_bundle(FastOptions(), "cuda", torch.bfloat16)
    reqs = requests({})
    ar = [r.tokens for r in get_engine("ar_native", bundle).generate(reqs)]
    for block in (4, 8, 32):
        spec = get_engine("nemotron", bundle).generate(
            requests({"block_length": block, "threshold": 0.0, "linear_speculation": True}))
        assert [r.tokens for r in spec] == ar, f"block {block}"


@cuda
@pytest.mark.parametrize("engine,settings", [("ar_native", {}), ("nemotron", {"block_length": 4, "threshold": 0.0,
                                                                          "linear_speculation": True})],
                         ids=["ar", "linear_spec"])
def test_cuda_decode_loop_has_no_synchronizing_ops(engine, settings):
    """The loops read each forward's decision through an event on a pinned copy, queued behind the
    next forward; no op in them may drain the GPU queue: the number of synchronizing ops of a call
    (prefill, finishing rows) must not grow with the tokens decoded."""
    eng = get_engine(engine, make_bundle(FastOptions(), "cuda", torch.bfloat16))

    def synchronizing_ops(tokens: int) -> list[str]:
        reqs = [GenerationRequest(prompt_ids=tuple(range(10, 30)), max_new_tokens=tokens, eos_early_stop=False,
                                  **settings)]
        eng.generate(reqs)                       # captures this call's graphs first
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                eng.generate(reqs)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]

    short, long = synchronizing_ops(8), synchronizing_ops(40)
    assert len(long) == len(short), f"8 tokens: {short}\n40 tokens: {long}"
