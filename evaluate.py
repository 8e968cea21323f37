"""One-process evaluation (no server): load the model, generate with the engine, score inline.

    python evaluate.py --model nvidia/Nemotron-Labs-Diffusion-8B --mode dlm --tasks gsm8k,math-500
    python evaluate.py --model builtin:tiny --mode ar --tasks gsm8k --limit 5 --device cpu --dtype fp32

Mode defaults as upstream: ar = block 1 / no threshold, dlm = block 8 / threshold 0.9,
linear_spec = block 32 / threshold 0 (LoRA from --lora is used in draft passes). Prints a progress
line every 50 problems and `<task> acc=..% avg_tok=.. avg_nfe=.. TPF=..` per task. Writes the
NeMo-Skills layout: <output-dir>/eval-results/<task>/output.jsonl, .done, metrics.json.
Data: --data-dir, else $NLD_DATA_DIR, else the small sample shipped in xp/nemo_skills/sample_data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python evaluate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="nvidia/Nemotron-Labs-Diffusion-8B",
                   help="local checkpoint dir, hub id, or builtin:tiny")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--mode", choices=("ar", "dlm", "linear_spec"), default="dlm")
    p.add_argument("--lora", default=None, help="LoRA adapter: a PEFT folder, a subfolder of the checkpoint "
                   "(e.g. linear_spec_lora) or a hub id (draft passes of linear_spec)")
    p.add_argument("--tasks", default="gsm8k", help="comma-separated benchmarks (name or name:reps)")
    p.add_argument("--limit", type=int, default=None, help="first N problems per task")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--block-length", type=int, default=None, help="default per mode: ar 1, dlm 8, linear_spec 32")
    p.add_argument("--threshold", type=float, default=None, help="default per mode: dlm 0.9, linear_spec 0")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--enable-thinking", action="store_true")
    p.add_argument("--max-thinking-tokens", type=int, default=6000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--output-dir", default=None, help="default outputs/evaluate/<model>_<mode>_<time>")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None, help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--registry", default=None)
    return p


def _check(args) -> str | None:
    for name in ("limit", "max_new_tokens", "block_length", "batch_size", "max_thinking_tokens"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            return f"--{name.replace('_', '-')} must be a positive integer (got {value})"
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        return f"--threshold must be in [0, 1] (got {args.threshold})"
    if args.temperature < 0:
        return f"--temperature must be >= 0 (got {args.temperature})"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from xp.nemo_skills.data import MissingDataError, resolve_data_dir
    from xp.nemo_skills.inprocess import InProcessSettings, PromptTooLong, evaluate_tasks
    from xp.nemo_skills.registry import RegistryError, load_registry, parse_benchmarks

    try:
        runs = parse_benchmarks(args.tasks, load_registry(args.registry))
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    from xp.dlm_generate import GenerationError
    from xp.model import load_model
    from xp.model.errors import ModelLoadError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("fp32" if device == "cpu" else "bf16")
    out_dir = Path(args.output_dir or Path("outputs") / "evaluate" /
                   f"{args.model.replace('/', '__').replace(':', '_')}_{args.mode}_{time.strftime('%Y%m%d_%H%M%S')}")
    settings = InProcessSettings(mode=args.mode, max_new_tokens=args.max_new_tokens, block_length=args.block_length,
                                 threshold=args.threshold, batch_size=args.batch_size, temperature=args.temperature,
                                 enable_thinking=args.enable_thinking, max_thinking_tokens=args.max_thinking_tokens)
    try:
        bundle = load_model(args.model, tokenizer=args.tokenizer, dtype=dtype, device=device, lora_path=args.lora)
        print(f"model {args.model} ({device}, {dtype}), mode {args.mode}, block {settings.resolved()[0]}, "
              f"threshold {settings.resolved()[1]}, results in {out_dir}")
        evaluate_tasks(bundle, runs, resolve_data_dir(args.data_dir), args.limit, out_dir, settings)
    except (ModelLoadError, MissingDataError, GenerationError, PromptTooLong) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
