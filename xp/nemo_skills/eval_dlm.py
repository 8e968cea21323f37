"""python -m xp.nemo_skills.eval_dlm --server URL --benchmarks "gsm8k:0,mbpp:2" --output-dir DIR ...

Evaluation client for an OpenAI-compatible server (our balancer or a worker). Writes NeMo-Skills'
layout under DIR/eval-results/<bench>/: output[-rs<seed>].jsonl (every input field + generation,
num_generated_tokens, nfe, timing, grader fields), resumable `-async` streams, `.done`, metrics.json.
`name:N`: 0 or a bare name = one greedy run (output.jsonl); N >= 1 = N seeded runs
(output-rs<seed>.jsonl, temperature 0.7 unless --temperature is given). Exit status 1 when a
benchmark failed (its finished samples stay in the -async file for the next run).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

import httpx
from rich.markup import escape

from xp.nemo_skills import results
from xp.nemo_skills.data import MissingDataError, load_rows, resolve_data_dir
from xp.nemo_skills.graders import grade_row, warm_up
from xp.nemo_skills.http_client import HttpSettings, ServerUnavailable, discover_concurrency, generate, request_body
from xp.nemo_skills.progress import ProgressReporter
from xp.nemo_skills.prompts import build_messages
from xp.nemo_skills.registry import BenchmarkRun, RegistryError, load_registry, parse_benchmarks
from xp.nemo_skills.runner import (DecodingSettings, RunningStats, SeedWork, output_row, plan_seeds,
                                   stale_outputs, write_benchmark_metrics, write_settings)
from xp.nemo_skills.summarize import print_table

SAMPLED_TEMPERATURE = 0.7  # NeMo-Skills' default for seeded runs
DEFAULT_CONCURRENCY = 16   # when the server's /health does not tell workers x batch size


def seed_temperature(seed: Optional[int], temperature: Optional[float]) -> float:
    if temperature is not None:
        return temperature
    return 0.0 if seed is None else SAMPLED_TEMPERATURE


async def _run_seed(run: BenchmarkRun, rows: list[dict], work: SeedWork, ctx: dict) -> None:
    """Generate the missing samples of one seed. Each generation is appended to the -async stream
    as soon as it arrives (before grading), so a crash loses no model work; grades are merged in
    when the ordered file is written."""
    spec, hs, dec = run.spec, ctx["http"], ctx["decoding"]
    writer = results.AsyncWriter(work.output)
    loop = asyncio.get_running_loop()
    temperature = seed_temperature(work.seed, dec.temperature)
    grades: dict[int, dict] = {}

    async def grade(pos: int, row: dict) -> dict:
        grades[pos] = await loop.run_in_executor(ctx["pool"], grade_row, spec, row)
        return grades[pos]

    async def one(pos: int) -> None:
        async with ctx["semaphore"]:
            body = request_body(build_messages(spec.prompt, rows[pos]), work.seed, temperature, dec, hs.model)
            gen = await generate(ctx["client"], body, hs)
        row = output_row(spec, rows[pos], gen)
        writer.append(pos, row)
        ctx["reporter"].advance(spec, {**row, **await grade(pos, row)})

    tasks = [asyncio.create_task(one(pos)) for pos in work.pending]
    tasks += [asyncio.create_task(grade(pos, row)) for pos, row in work.already.items()]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
    results.finalize(work.output, len(rows), grades)


async def run_benchmark(run: BenchmarkRun, rows: list[dict], output_dir: Path, ctx: dict) -> dict:
    for note in stale_outputs(run, len(rows), output_dir):
        ctx["reporter"].print(f"[yellow]note:[/yellow] {escape(note)}")
    works = plan_seeds(run, len(rows), output_dir)
    write_settings(output_dir, run.spec, ctx["decoding"])
    resumed = sum(len(w.already) for w in works)
    ctx["reporter"].start(run.spec, sum(len(w.pending) for w in works), RunningStats(), resumed)
    try:
        for work in works:
            await _run_seed(run, rows, work, ctx)
    finally:
        ctx["reporter"].stop(run.spec)
    return write_benchmark_metrics(run.spec, results.bench_dir(output_dir, run.spec.name))


async def run_all(runs: list[BenchmarkRun], data_dir: Path, limit: Optional[int], output_dir: Path,
                  hs: HttpSettings, dec: DecodingSettings, concurrency: Optional[int]) -> int:
    failed = 0
    summary = {}
    spawn = multiprocessing.get_context("spawn")  # graders use SIGALRM timeouts: own main threads
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool, ProgressReporter() as reporter:
        pool.submit(warm_up)  # start the grader processes while the first requests are in flight
        if concurrency is None:
            async with httpx.AsyncClient() as probe:
                concurrency = await discover_concurrency(probe, hs) or DEFAULT_CONCURRENCY
            reporter.print(f"concurrency {concurrency} (workers x batch size from /health)")
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits) as client:
            ctx = {"http": hs, "decoding": dec, "client": client, "pool": pool, "reporter": reporter,
                   "semaphore": asyncio.Semaphore(concurrency)}
            for run in runs:
                try:
                    rows = load_rows(run.spec, data_dir, limit)
                    summary[run.spec.name] = (run.spec, await run_benchmark(run, rows, output_dir, ctx))
                except (MissingDataError, ServerUnavailable, ValueError, RuntimeError) as exc:
                    reporter.print(f"[red]{run.spec.name} failed:[/red] {escape(str(exc))}")
                    failed += 1
    if summary:
        print_table(summary)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xp.nemo_skills.eval_dlm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="server root URL, e.g. http://127.0.0.1:5000 (with or without /v1)")
    p.add_argument("--benchmarks", default=None, help="name[:reps],... (default: the registry's default suite)")
    p.add_argument("--output-dir", required=True, help="results go to DIR/eval-results/<bench>/")
    p.add_argument("--data-dir", default=None, help="prepared data (default $NLD_DATA_DIR, else the shipped sample)")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems of each benchmark")
    p.add_argument("--concurrency", type=int, default=None,
                   help="requests in flight (default: workers x batch size read from /health, else 16)")
    p.add_argument("--max-tokens", type=int, default=None, help="completion tokens (default: the server's)")
    p.add_argument("--block-length", type=int, default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None,
                   help="default 0 for greedy runs, 0.7 for seeded runs (as NeMo-Skills)")
    p.add_argument("--linear-speculation", action="store_true")
    p.add_argument("--draft-lora-only", action="store_true")
    p.add_argument("--max-thinking-tokens", type=int, default=None)
    p.add_argument("--enable-thinking", action="store_true")
    p.add_argument("--api-key", default=None)
    p.add_argument("--model", default="nld", help="model name sent in requests (any string is accepted)")
    p.add_argument("--mode", default=None, help="decoding mode label recorded with the results")
    p.add_argument("--request-timeout", type=float, default=3600.0, help="seconds per request (default 3600)")
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--registry", default=None, help="benchmark registry YAML (default configs/benchmarks.yaml)")
    p.add_argument("--client", choices=("native", "nemo-skills"), default="native",
                   help="nemo-skills: run NeMo-Skills' own generate + summarize (needs the nemo_skills package)")
    return p


def _validate(args) -> Optional[str]:
    for name in ("limit", "concurrency", "max_tokens", "block_length", "max_thinking_tokens"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            return f"--{name.replace('_', '-')} must be a positive integer (got {value})"
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        return f"--threshold must be in [0, 1] (got {args.threshold})"
    if args.temperature is not None and args.temperature < 0:
        return f"--temperature must be >= 0 (got {args.temperature})"
    if args.request_timeout <= 0 or args.max_retries < 0:
        return "--request-timeout must be > 0 and --max-retries >= 0"
    return None


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _validate(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        registry = load_registry(args.registry)
        runs = parse_benchmarks(args.benchmarks or registry.default_suite_string(), registry)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dec = DecodingSettings(mode=args.mode, max_tokens=args.max_tokens, temperature=args.temperature,
                           block_length=args.block_length, threshold=args.threshold,
                           linear_speculation=args.linear_speculation, draft_lora_only=args.draft_lora_only,
                           max_thinking_tokens=args.max_thinking_tokens, enable_thinking=args.enable_thinking)
    hs = HttpSettings(server=args.server, api_key=args.api_key, model=args.model,
                      request_timeout=args.request_timeout, max_retries=args.max_retries)
    data_dir = resolve_data_dir(args.data_dir)
    if args.client == "nemo-skills":
        from xp.nemo_skills.ns_client import NemoSkillsMissing, run_nemo_skills

        try:
            return run_nemo_skills(runs, data_dir, Path(args.output_dir), hs, dec,
                                   args.concurrency or DEFAULT_CONCURRENCY, args.limit)
        except NemoSkillsMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        return asyncio.run(run_all(runs, data_dir, args.limit, Path(args.output_dir), hs, dec, args.concurrency))
    except KeyboardInterrupt:
        print("interrupted: finished samples are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
