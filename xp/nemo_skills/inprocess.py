"""The one-process evaluation behind evaluate.py: load the model, run each benchmark through the
engine in batches, grade inline, and write the same layout as the HTTP client.

NFE convention: the `nfe` written per sample and used for avg_nfe / TPF excludes the prefill
(NeMo-Skills / Table-5 convention), identically in every mode, so numbers compare with the
server path. (Upstream evaluate.py counted the prefill for linear_spec only.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from xp.nemo_skills import results
from xp.nemo_skills.data import load_rows
from xp.nemo_skills.graders import grade_row
from xp.nemo_skills.prompts import build_messages
from xp.nemo_skills.registry import BenchmarkRun
from xp.nemo_skills.runner import (DecodingSettings, Generation, RunningStats, output_row, plan_seeds,
                                   stale_outputs, write_benchmark_metrics, write_settings)

# Upstream evaluate.py MODE_DEFAULTS (block length, threshold) and the engine each mode uses.
MODE_DEFAULTS = {"ar": (1, None), "dlm": (8, 0.9), "linear_spec": (32, 0.0)}
MODE_ENGINE = {"ar": "ar_native", "dlm": "nemotron", "linear_spec": "nemotron"}
PROGRESS_EVERY = 50


@dataclass(frozen=True)
class InProcessSettings:
    mode: str
    max_new_tokens: int = 512
    block_length: Optional[int] = None
    threshold: Optional[float] = None
    batch_size: int = 1
    temperature: float = 0.0
    enable_thinking: bool = False
    max_thinking_tokens: Optional[int] = None

    def resolved(self) -> tuple[int, Optional[float]]:
        block, threshold = MODE_DEFAULTS[self.mode]
        return (self.block_length or block, threshold if self.threshold is None else self.threshold)


class PromptTooLong(ValueError):
    pass


def encode_prompt(bundle, messages: list[dict], enable_thinking: bool) -> tuple[int, ...]:
    text = bundle.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                enable_thinking=enable_thinking)
    return tuple(bundle.tokenizer(text, add_special_tokens=False)["input_ids"])


def make_decoder(bundle) -> Callable[[list[int]], str]:
    """Completion ids -> text exactly as the worker does (cut at EOS, hide specials but <think>)."""
    from xp.dlm_api.text import cut_at_eos, hidden_special_ids

    hidden = hidden_special_ids(bundle.tokenizer)
    eos = frozenset({bundle.eos_token_id})

    def decode(tokens: list[int]) -> str:
        ids = [t for t in cut_at_eos(tokens, eos) if t not in hidden]
        return bundle.tokenizer.decode(ids, skip_special_tokens=False)

    return decode


def _requests(bundle, prompt_name: str, rows, positions, seed, s: InProcessSettings):
    from xp.dlm_generate import GenerationRequest

    block, threshold = s.resolved()
    reqs = []
    for pos in positions:
        ids = encode_prompt(bundle, build_messages(prompt_name, rows[pos]), s.enable_thinking)
        if len(ids) + s.max_new_tokens > bundle.max_model_len:
            raise PromptTooLong(f"problem {pos}: prompt ({len(ids)} tokens) + --max-new-tokens {s.max_new_tokens} "
                                f"exceeds the model length {bundle.max_model_len}; lower --max-new-tokens")
        reqs.append(GenerationRequest(
            prompt_ids=ids, max_new_tokens=s.max_new_tokens, block_length=block, threshold=threshold,
            temperature=s.temperature, seed=seed, linear_speculation=s.mode == "linear_spec",
            use_draft_lora=bundle.has_lora and s.mode == "linear_spec",
            max_thinking_tokens=s.max_thinking_tokens if s.enable_thinking else None, request_id=str(pos)))
    return reqs


def run_task(engine, bundle, run: BenchmarkRun, rows: list[dict], output_dir: Path, s: InProcessSettings,
             log: Callable[[str], None] = print) -> tuple[dict, RunningStats]:
    spec = run.spec
    decode = make_decoder(bundle)
    block, threshold = s.resolved()
    write_settings(output_dir, spec, DecodingSettings(
        mode=s.mode, max_tokens=s.max_new_tokens, temperature=s.temperature, block_length=block,
        threshold=threshold, linear_speculation=s.mode == "linear_spec", enable_thinking=s.enable_thinking,
        max_thinking_tokens=s.max_thinking_tokens, extra={"engine": MODE_ENGINE[s.mode], "batch_size": s.batch_size}))
    stats = RunningStats()
    for note in stale_outputs(run, len(rows), output_dir):
        log(f"note: {note}")
    for work in plan_seeds(run, len(rows), output_dir):
        grades = {pos: grade_row(spec, row) for pos, row in work.already.items()}  # resumed samples
        for pos, row in work.already.items():
            stats.add(spec, {**row, **grades[pos]})
        writer = results.AsyncWriter(work.output)
        try:
            for i in range(0, len(work.pending), s.batch_size):
                positions = work.pending[i:i + s.batch_size]
                start = time.time()
                outs = engine.generate(_requests(bundle, spec.prompt, rows, positions, work.seed, s))
                end = time.time()
                for pos, res in zip(positions, outs):
                    gen = Generation(decode(res.tokens), len(res.tokens), res.nfe, res.finish_reason, start, end)
                    row = output_row(spec, rows[pos], gen)
                    writer.append(pos, row)  # durable before grading
                    grades[pos] = grade_row(spec, row)
                    stats.add(spec, {**row, **grades[pos]})
                    if stats.done % PROGRESS_EVERY == 0:
                        log(f"  {spec.name} [{stats.done}] acc={stats.accuracy:.2f}% TPF={stats.tpf:.2f}")
        finally:
            writer.close()
        results.finalize(work.output, len(rows), grades)
    metrics = write_benchmark_metrics(spec, results.bench_dir(output_dir, spec.name))
    return metrics, stats


def summary_line(name: str, stats: RunningStats) -> str:
    n = max(stats.done, 1)
    return (f"{name} acc={stats.accuracy:.2f}% avg_tok={stats.tokens / n:.1f} avg_nfe={stats.nfe / n:.1f} "
            f"TPF={stats.tpf:.2f} ({stats.done} problems)")


def evaluate_tasks(bundle, runs: list[BenchmarkRun], data_dir: Path, limit: Optional[int], output_dir: Path,
                   s: InProcessSettings, log: Callable[[str], None] = print) -> dict[str, dict]:
    from xp.dlm_generate import get_engine

    engine = get_engine(MODE_ENGINE[s.mode], bundle)
    out = {}
    for run in runs:
        rows = load_rows(run.spec, data_dir, limit)
        metrics, stats = run_task(engine, bundle, run, rows, output_dir, s, log)
        log(summary_line(run.spec.name, stats))
        out[run.spec.name] = metrics
    return out
