"""Engine speed on one GPU: per-forward latency, end-to-end decode, transformers baseline, bandwidth floor.

    PYTHONPATH=. python bench/engine.py --out DIR             # 8B shapes, random bf16 weights, CUDA
    PYTHONPATH=. python bench/engine.py --tiny --device cpu   # smoke run of every section

All numbers come from one run on one device:
1. floor: weight bytes a decode step must read (every parameter but the embedding table) over the
   device-to-device copy bandwidth measured here (bytes read + written per second);
2. per-forward latency with a --prompt-len prompt in cache, at each batch: a causal 1-token step,
   bidirectional block passes of 8 and 32, a causal verify pass of 32 (CUDA: graph replays, the
   engines' path; plus the un-graphed step at batch 1);
3. end-to-end decode of --new-tokens tokens (EOS ignored) per mode and batch through the engines;
   decode tokens/s excludes the prefill (measured separately) and one-time graph capture;
4. baseline: transformers' own Ministral3/Mistral model with the same shapes, generate() greedy.
Prints one table and writes DIR/engine_bench.json (replaced atomically after each section).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import torch

from xp.dlm_generate import GenerationRequest, get_engine
from xp.model.config import ModelConfig
from xp.model.loader import ModelBundle
from xp.model.tiny import config_8b, random_model, tiny_config
from xp.model.transformer import NLDModel, linear

MODES = {  # name -> (engine, request settings)
    "ar": ("ar_native", {}),
    "dlm_b8_t0.9": ("nemotron", {"block_length": 8, "threshold": 0.9}),
    "dlm_b8_t0": ("nemotron", {"block_length": 8, "threshold": 0.0}),
    "linear_spec_b32": ("nemotron", {"block_length": 32, "threshold": 0.0, "linear_speculation": True}),
}


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_model(config: ModelConfig, device: torch.device, dtype: torch.dtype, tiny: bool) -> NLDModel:
    """Random weights created directly on the device (no CPU copy of the 8B)."""
    if tiny:
        return random_model(config, seed=0).to(device=device, dtype=dtype).eval()
    with torch.device(device), default_dtype(dtype):
        return NLDModel(config).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, iters: int, repeats: int = 5) -> float:
    """Median seconds per call of fn over `repeats` groups of `iters` back-to-back calls."""
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1000 / iters)
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            samples.append((time.perf_counter() - t0) / iters)
    return statistics.median(samples)


def copy_bandwidth(device: torch.device, nbytes: int) -> float:
    """Device-to-device copy bandwidth, bytes read + written per second."""
    a = torch.randn(nbytes // 2, dtype=torch.bfloat16, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    sec = timed(lambda: b.copy_(a), device, iters=10)
    return 2 * nbytes / sec


def weight_bytes(model: NLDModel) -> tuple[int, int]:
    """(all parameter bytes, bytes a decode step reads: all but the embedding table)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.encoder.embed_tokens.weight
    return total, total - emb.numel() * emb.element_size()


def random_prompts(n: int, length: int, vocab: int, seed: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    return [tuple(rng.randrange(200, vocab) for _ in range(length)) for _ in range(n)]


def prefill_cache(model: NLDModel, prompts, cache) -> None:
    ids = torch.tensor(prompts, device=model.device)
    at = torch.full((len(prompts),), ids.shape[1] - 1, device=model.device)
    model(ids, cache, "causal", commit=True, logits_at=at, graph=False)


def forward_latency(model: NLDModel, args, batches: list[int], device) -> dict:
    """Seconds per forward for each (pass, batch), with a prompt of args.prompt_len in cache."""
    P, V, out = args.prompt_len, model.config.vocab_size, {}
    max_len = P + args.new_tokens + 64
    del_cache = model.new_cache(max(batches), max_len, reuse=True)   # size the arena once
    del del_cache
    for B in batches:
        cache = model.new_cache(B, max_len, reuse=True)
        prompts = random_prompts(B, P, V, seed=B)
        sync(device)
        t0 = time.perf_counter()
        prefill_cache(model, prompts, cache)
        sync(device)
        out[f"prefill/b{B}"] = time.perf_counter() - t0        # first call: includes warm-up
        ids = {L: torch.randint(200, V, (B, L), device=device) for L in (1, 8, 32)}
        zero = torch.zeros(B, dtype=torch.long, device=device)
        passes = {
            "ar_step": lambda: model(ids[1], cache, "causal", kv_len=P + 1, logits_at=zero),
            "bidir_block8": lambda: model(ids[8], cache, "bidir", kv_len=P + 8),
            "bidir_block32": lambda: model(ids[32], cache, "bidir", kv_len=P + 32),
            "verify32": lambda: model(ids[32], cache, "causal", kv_len=P + 32),
        }
        for name, fn in passes.items():
            for _ in range(3):   # capture + warm
                fn()
            out[f"{name}/b{B}"] = timed(fn, device, iters=args.iters)
        if B == 1:   # the same step without graph replay (compiled ops, fused weights still on)
            out["ar_step_nograph/b1"] = timed(
                lambda: model(ids[1], cache, "causal", kv_len=P + 1, logits_at=zero, graph=False),
                device, iters=max(2, args.iters // 4), repeats=3)
        for _ in range(2):   # warm prefill on a plain cache (the first may still compile a shape)
            sync(device)
            t0 = time.perf_counter()
            prefill_cache(model, prompts, model.new_cache(B, max_len))
            sync(device)
            out[f"prefill/b{B}"] = time.perf_counter() - t0
        del cache
    return out


def gemm_only(model: NLDModel, device, fast: bool) -> float:
    """Seconds for just the weight GEMMs of a batch-1 decode step, graphed: fast=True as the kernel path
    runs them (skinny Triton GEMMs), else cuBLAS (`F.linear`)."""
    c, dt = model.config, model.dtype
    x = torch.randn(1, c.hidden_size, dtype=dt, device=device)
    xi = torch.randn(1, c.intermediate_size, dtype=dt, device=device)
    weights = [model.diffusion_head.weight]
    for layer in model.encoder.layers:
        a, m = layer.self_attn, layer.mlp
        weights += [a.qkv_weight] if a.qkv_weight is not None else [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]
        weights += [a.o_proj.weight, m.down_proj.weight]
        weights += [m.gate_up_weight] if m.gate_up_weight is not None else [m.gate_proj.weight, m.up_proj.weight]

    def step():
        for w in weights:
            linear(xi if w.shape[1] == c.intermediate_size else x, w, fast)
    if device.type != "cuda":
        return timed(step, device, iters=1, repeats=3)
    step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return timed(graph.replay, device, iters=20)


def breakdown(model: NLDModel, args, device) -> dict:
    """Where the batch-1 step goes: the GEMMs alone (both ways), and the step without the Triton
    kernels (SDPA attention, PyTorch RoPE and cache writes, cuBLAS) or without compiled elementwise ops."""
    P = args.prompt_len
    out = {"gemm_only_cublas/b1": gemm_only(model, device, fast=False)}
    if device.type == "cuda" and model.fast.kernels:
        out["gemm_only_kernels/b1"] = gemm_only(model, device, fast=True)
    prompts = random_prompts(1, P, model.config.vocab_size, seed=1)
    ids = torch.randint(200, model.config.vocab_size, (1, 1), device=device)
    zero = torch.zeros(1, dtype=torch.long, device=device)

    def step_time() -> float:
        model._arena = None   # fresh arena: graphs captured under the current settings
        cache = model.new_cache(1, P + 64, reuse=True)
        prefill_cache(model, prompts, cache)
        fn = lambda: model(ids, cache, "causal", kv_len=P + 1, logits_at=zero)
        for _ in range(3):
            fn()
        return timed(fn, device, iters=args.iters)

    ops, kernels_on = model.ops, model.fast.kernels
    try:
        model.fast.kernels = False
        out["ar_step_without_kernels/b1"] = step_time()
        model.fast.kernels = kernels_on
        from xp.model.fused_ops import EAGER_OPS
        model.ops = EAGER_OPS
        out["ar_step_eager_ops/b1"] = step_time()
    finally:
        model.ops, model.fast.kernels = ops, kernels_on
        model._arena = None
    return out


def bundle_for(model: NLDModel) -> ModelBundle:
    c = model.config
    return ModelBundle(model=model, tokenizer=None, config=c, max_model_len=c.max_position_embeddings,
                       has_lora=False, eos_token_id=c.eos_token_id, mask_token_id=c.mask_token_id,
                       end_think_token_id=None, name="random")


def decode_e2e(model: NLDModel, args, batches: list[int], modes: list[str], prefill_s: dict, device) -> dict:
    """Per (mode, batch): decode tokens/s and forwards, through the engines."""
    bundle, out = bundle_for(model), {}
    for mode in modes:
        engine_name, settings = MODES[mode]
        engine = get_engine(engine_name, bundle)
        for B in batches:
            reqs = [GenerationRequest(prompt_ids=p, max_new_tokens=args.new_tokens, eos_early_stop=False,
                                      **settings)
                    for p in random_prompts(B, args.prompt_len, model.config.vocab_size, seed=100 + B)]
            graphs = model._arena.graphs if model._arena is not None else None
            cap0 = graphs.capture_seconds if graphs else 0.0
            sync(device)
            t0 = time.perf_counter()
            results = engine.generate(reqs)
            sync(device)
            wall = time.perf_counter() - t0
            after = model._arena.graphs if model._arena is not None else None   # generate may make a new arena
            capture = (after.capture_seconds - (cap0 if after is graphs else 0.0)) if after else 0.0
            decode = wall - capture - prefill_s.get(f"prefill/b{B}", 0.0)
            tokens = sum(len(r.tokens) for r in results)
            cycles = max((len(r.acceptance_lengths or []) for r in results), default=0)
            out[f"{mode}/b{B}"] = {
                "wall_s": wall, "capture_s": capture, "decode_s": decode, "tokens": tokens,
                "tokens_per_s": tokens / decode, "nfe_per_row": statistics.mean(r.nfe for r in results),
                "cycles": cycles, "cycle_s": decode / cycles if cycles else None,
                "mean_acceptance": (statistics.mean(a for r in results for a in r.acceptance_lengths)
                                    if cycles else None)}
            print(f"  {mode:16s} b{B:<3d} {tokens / decode:9.1f} tok/s  nfe/row {out[f'{mode}/b{B}']['nfe_per_row']}"
                  f"  wall {wall:.2f}s capture {capture:.2f}s", flush=True)
    return out


def hf_model(config: ModelConfig, device, dtype):
    """transformers' own decoder with the same shapes and random weights (Ministral3, else Mistral)."""
    d = config.to_json_dict()
    common = dict(hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
                  num_attention_heads=config.num_attention_heads, num_key_value_heads=config.num_key_value_heads,
                  head_dim=config.head_dim, intermediate_size=config.intermediate_size,
                  vocab_size=config.vocab_size, max_position_embeddings=config.max_position_embeddings,
                  rms_norm_eps=config.rms_norm_eps, tie_word_embeddings=False, sliding_window=None,
                  bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=0)
    try:
        from transformers import Ministral3Config, Ministral3ForCausalLM
        cls, cfg = Ministral3ForCausalLM, Ministral3Config(rope_parameters=dict(d["rope_parameters"]), **common)
    except ImportError:
        from transformers import MistralConfig, MistralForCausalLM
        cls, cfg = MistralForCausalLM, MistralConfig(rope_theta=config.rope.rope_theta, **common)
    with torch.device(device), default_dtype(dtype):
        return cls(cfg).eval(), cls.__name__


def baseline(config: ModelConfig, args, batches: list[int], device, dtype) -> dict:
    model, name = hf_model(config, device, dtype)
    out = {"class": name}
    for B in [b for b in batches if b in (1, 8)]:
        ids = torch.tensor(random_prompts(B, args.prompt_len, config.vocab_size, seed=200 + B), device=device)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            model.generate(ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False)
            sync(device)
            t0 = time.perf_counter()
            model(ids, attention_mask=mask, logits_to_keep=1)
            sync(device)
            prefill = time.perf_counter() - t0
            t0 = time.perf_counter()
            gen = model.generate(ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, do_sample=False)
            sync(device)
            wall = time.perf_counter() - t0
        tokens = (gen.shape[1] - ids.shape[1]) * B
        out[f"generate/b{B}"] = {"wall_s": wall, "prefill_s": prefill, "tokens": tokens,
                                 "tokens_per_s": tokens / (wall - prefill)}
        print(f"  transformers generate b{B}: {tokens / (wall - prefill):.1f} tok/s", flush=True)
    del model
    return out


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def goals(r: dict) -> list[tuple[str, Optional[float], str]]:
    lat, e2e, base = r.get("latency", {}), r.get("decode", {}), r.get("baseline", {})
    step1 = lat.get("ar_step/b1")
    spec = e2e.get("linear_spec_b32/b1", {})
    ours_ar = e2e.get("ar/b1", {}).get("tokens_per_s")
    hf_ar = base.get("generate/b1", {}).get("tokens_per_s")
    return [
        ("AR step b1 / bandwidth floor", ratio(step1, r.get("floor_s")), "<= 1.25"),
        ("AR tok/s b1 / transformers generate b1", ratio(ours_ar, hf_ar), ">= 3"),
        ("bidir block32 b1 / AR step b1", ratio(lat.get("bidir_block32/b1"), step1), "<= 1.2"),
        ("spec cycle b1 (e2e) / AR step b1", ratio(spec.get("cycle_s"), step1), "<= 2.3"),
        ("draft32+verify32 forwards b1 / AR step b1",
         ratio((lat.get("bidir_block32/b1") or 0) + (lat.get("verify32/b1") or 0), step1), "<= 2.3"),
        ("AR step b32 / AR step b1", ratio(lat.get("ar_step/b32"), step1), "<= 2"),
    ]


def print_table(r: dict) -> None:
    ms = lambda s: f"{s * 1e3:9.2f}" if s is not None else "        -"
    print(f"\n== engine bench: {r['device_name']}, torch {r['torch']}, transformers {r['transformers']}")
    print(f"weights read per step {r['weight_bytes_read'] / 1e9:.2f} GB, copy bandwidth "
          f"{r['copy_bandwidth'] / 1e12:.2f} TB/s -> floor {r['floor_s'] * 1e3:.2f} ms/step")
    lat = r.get("latency", {})
    print("\nper-forward latency (ms), prompt in cache:")
    print(f"{'pass':18s}" + "".join(f"{'b' + str(b):>10s}" for b in r["batches"]))
    for name in ("ar_step", "bidir_block8", "bidir_block32", "verify32", "ar_step_nograph", "prefill"):
        if any(f"{name}/b{b}" in lat for b in r["batches"]):
            print(f"{name:18s}" + "".join(f" {ms(lat.get(f'{name}/b{b}'))}" for b in r["batches"]))
    for name, value in r.get("breakdown", {}).items():
        shown = f"{value * 1e3:.2f} ms" if isinstance(value, float) else value
        print(f"  breakdown {name:32s} {shown}")
    print("\ndecode tokens/s (EOS ignored; prefill and graph capture excluded):")
    print(f"{'mode':18s}" + "".join(f"{'b' + str(b):>10s}" for b in r["batches"]) + "   forwards/token b1")
    for mode in r.get("modes", []):
        row = [r.get("decode", {}).get(f"{mode}/b{b}") for b in r["batches"]]
        fpt = f"{row[0]['nfe_per_row'] / (row[0]['tokens'] / r['batches'][0]):.2f}" if row[0] else "-"
        print(f"{mode:18s}" + "".join(f"{x['tokens_per_s']:10.1f}" if x else f"{'-':>10s}" for x in row)
              + f"   {fpt}")
    base = r.get("baseline", {})
    for b in (1, 8):
        if f"generate/b{b}" in base:
            print(f"{'hf generate':18s} b{b}: {base[f'generate/b{b}']['tokens_per_s']:.1f} tok/s ({base['class']})")
    print("\ngoals:")
    for name, value, target in goals(r):
        shown = f"{value:.3f}" if value is not None else "n/a"
        print(f"  {name:45s} {shown:>8s}  (goal {target})")


def write_json(r: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".engine_bench.json.tmp"
    r = dict(r, goals=[{"name": n, "value": v, "goal": g} for n, v, g in goals(r)])
    tmp.write_text(json.dumps(r, indent=2))
    os.replace(tmp, out_dir / "engine_bench.json")


def section(r: dict, name: str, fn: Callable[[], object], out_dir: Path) -> None:
    """Run one section; a failure is recorded and the run goes on."""
    t0 = time.perf_counter()
    print(f"-- {name}", flush=True)
    try:
        r[name] = fn()
    except Exception as e:
        traceback.print_exc()
        r.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
    r.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
    write_json(r, out_dir)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/engine.py", description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny config (smoke run)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--batches", default=None, help="comma list (default 1,8,32; tiny 1,2)")
    ap.add_argument("--prompt-len", type=int, default=None, help="prompt tokens in cache (default 1024; tiny 32)")
    ap.add_argument("--new-tokens", type=int, default=None, help="decoded tokens (default 256; tiny 16)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    ap.add_argument("--iters", type=int, default=None, help="timed calls per sample (default 20; tiny 2)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the transformers baseline")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the batch-1 step breakdown")
    ap.add_argument("--out", default="bench_out", help="folder for engine_bench.json")
    args = ap.parse_args(argv)
    args.batches = args.batches or ("1,2" if args.tiny else "1,8,32")
    args.prompt_len = args.prompt_len or (32 if args.tiny else 1024)
    args.new_tokens = args.new_tokens or (16 if args.tiny else 256)
    args.iters = args.iters or (2 if args.tiny else 20)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
        modes = args.modes.split(",")
        bad = [m for m in modes if m not in MODES]
        if bad or min(batches) < 1:
            raise ValueError(f"unknown mode(s) {bad}" if bad else "batches must be >= 1")
    except ValueError as e:
        print(f"error: {e}; use --batches 1,8,32 and --modes from {', '.join(MODES)}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available; use --device cpu --tiny", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = tiny_config() if args.tiny else config_8b()
    import transformers
    r = {"device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
         "torch": torch.__version__, "transformers": transformers.__version__, "dtype": str(dtype),
         "config": "tiny" if args.tiny else "8b", "batches": batches, "modes": modes,
         "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "command": " ".join(sys.argv)}
    out_dir = Path(args.out)
    r["copy_bandwidth"] = copy_bandwidth(device, (1 << 30) if device.type == "cuda" else (1 << 26))
    t0 = time.perf_counter()
    model = build_model(config, device, dtype, args.tiny)
    model.prepare_fast()
    sync(device)
    r["build_s"] = time.perf_counter() - t0
    r["fast"] = vars(model.fast)
    r["weight_bytes_all"], r["weight_bytes_read"] = weight_bytes(model)
    r["floor_s"] = r["weight_bytes_read"] / r["copy_bandwidth"]
    section(r, "latency", lambda: forward_latency(model, args, batches, device), out_dir)
    if not args.no_breakdown:
        section(r, "breakdown", lambda: breakdown(model, args, device), out_dir)
    section(r, "decode", lambda: decode_e2e(model, args, batches, modes, r.get("latency", {}), device), out_dir)
    if model._arena is not None:
        r["graphs"] = len(model._arena.graphs.graphs)
        r["graph_capture_s"] = model._arena.graphs.capture_seconds
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
        r["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    if not args.no_baseline:
        section(r, "baseline", lambda: baseline(config, args, batches, device, dtype), out_dir)
    write_json(r, out_dir)
    print_table(r)
    return 1 if r.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
