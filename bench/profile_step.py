"""Where a decoding forward's GPU time goes: kernel-by-kernel profile of graphed forwards of the 8B.

    PYTHONPATH=. python bench/profile_step.py --out DIR       # CUDA, 8B shapes, random bf16 weights

For each pass (a batch-1 AR step, a batch-1 bidirectional block of 32, a batch-1 causal verify of 32,
a batch-32 AR step) with a --prompt-len prompt in cache, replays the captured forward under
torch.profiler and prints the kernels by GPU time per forward (calls per forward, mean and total
microseconds), their sum against the forward's wall time (the gap is launch/idle time between
kernels), and the bandwidth floor of the weights. Writes DIR/profile_step.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import build_model, copy_bandwidth, prefill_cache, random_prompts, timed, weight_bytes  # noqa: E402

from xp.model.tiny import config_8b  # noqa: E402

PASSES = {"ar_step/b1": (1, 1, "causal"), "bidir_block32/b1": (1, 32, "bidir"),
          "verify32/b1": (1, 32, "causal"), "ar_step/b32": (32, 1, "causal")}


def kernel_table(model, batch: int, length: int, mode: str, prompt: int, replays: int = 10) -> dict:
    cache = model.new_cache(batch, prompt + 128, reuse=True)
    prefill_cache(model, random_prompts(batch, prompt, model.config.vocab_size, seed=batch), cache)
    ids = torch.randint(200, model.config.vocab_size, (batch, length), device="cuda")
    at = torch.zeros(batch, dtype=torch.long, device="cuda") if length == 1 else None
    fn = lambda: model(ids, cache, mode, kv_len=prompt + length, logits_at=at)
    for _ in range(3):
        fn()
    wall = timed(fn, torch.device("cuda"), iters=20)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            fn()
        torch.cuda.synchronize()
    per_name = collections.defaultdict(lambda: [0, 0.0])
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            per_name[ev.name][0] += 1
            per_name[ev.name][1] += ev.device_time
    rows = sorted(((name[:90], n / replays, t / replays) for name, (n, t) in per_name.items()),
                  key=lambda r: -r[2])
    del cache
    return {"wall_us": wall * 1e6, "kernel_us": sum(r[2] for r in rows),
            "kernels": [{"name": n, "calls": c, "us": t} for n, c, t in rows]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prompt-len", type=int, default=1024)
    ap.add_argument("--passes", default=",".join(PASSES), help="comma list of " + ", ".join(PASSES))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: bench/profile_step.py needs a CUDA GPU")
    device = torch.device("cuda")
    model = build_model(config_8b(), device, torch.bfloat16, tiny=False)
    model.prepare_fast()
    floor = weight_bytes(model)[1] / copy_bandwidth(device, 1 << 30)
    result = {"device": torch.cuda.get_device_name(), "floor_us": floor * 1e6, "passes": {}}
    print(f"bandwidth floor {floor * 1e6:.0f} us per forward")
    for name in args.passes.split(","):
        batch, length, mode = PASSES[name]
        r = result["passes"][name] = kernel_table(model, batch, length, mode, args.prompt_len)
        print(f"\n== {name}: wall {r['wall_us']:.0f} us, kernels {r['kernel_us']:.0f} us "
              f"({r['wall_us'] - r['kernel_us']:.0f} us between kernels)")
        print(f"{'calls':>6s} {'mean us':>8s} {'total us':>9s}  kernel")
        for k in r["kernels"][:14]:
            print(f"{k['calls']:6.1f} {k['us'] / k['calls']:8.2f} {k['us']:9.1f}  {k['name']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_step.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
