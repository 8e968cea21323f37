"""What the HTTP client and evaluate.py share: which samples are still to do, how a finished
generation becomes an output row, running accuracy/TPF, and the metrics of a finished benchmark.
The generation itself (HTTP or in-process engine) is the caller's business."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from xp.nemo_skills import results
from xp.nemo_skills.graders import is_correct
from xp.nemo_skills.metrics import compute_metrics
from xp.nemo_skills.registry import BenchmarkRun, BenchmarkSpec


@dataclass
class Generation:
    text: str
    num_generated_tokens: int
    nfe: Optional[int]
    finish_reason: str
    start: float
    end: float
    error: Optional[str] = None


@dataclass
class SeedWork:
    seed: Optional[int]
    output: Path
    pending: list[int]          # positions still to generate
    already: dict[int, dict]    # finished rows from an earlier (crashed) run


@dataclass
class RunningStats:
    done: int = 0
    correct: int = 0
    tokens: int = 0
    nfe: int = 0
    errors: int = 0

    def add(self, spec: BenchmarkSpec, row: dict) -> None:
        self.done += 1
        self.correct += is_correct(spec, row)
        self.tokens += row.get("num_generated_tokens") or 0
        self.nfe += row.get("nfe") or 0
        self.errors += "error" in row

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.done if self.done else 0.0

    @property
    def tpf(self) -> float:
        return self.tokens / self.nfe if self.nfe else 0.0


@dataclass(frozen=True)
class DecodingSettings:
    """Recorded next to the outputs (NeMo-Skills has no field for diffusion knobs)."""

    mode: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    block_length: Optional[int] = None
    threshold: Optional[float] = None
    linear_speculation: bool = False
    draft_lora_only: bool = False
    max_thinking_tokens: Optional[int] = None
    enable_thinking: bool = False
    extra: dict = field(default_factory=dict)


def stale_outputs(run: BenchmarkRun, n_rows: int, output_dir: Path) -> list[str]:
    """Finished outputs whose row count differs from the data now asked for (another --limit)."""
    bdir = results.bench_dir(output_dir, run.spec.name)
    notes = []
    for seed in run.seeds:
        output = bdir / results.output_name(seed)
        if output.exists():
            have = sum(1 for line in open(output, encoding="utf-8") if line.strip())
            if have != n_rows:
                notes.append(f"{output} is finished with {have} rows but {n_rows} were asked for (another "
                             "--limit?); it is kept as is: move it away to generate again")
    return notes


def plan_seeds(run: BenchmarkRun, n_rows: int, output_dir: Path) -> list[SeedWork]:
    """Seeds whose final output is not written yet, with the positions still missing."""
    work = []
    bdir = results.bench_dir(output_dir, run.spec.name)
    for seed in run.seeds:
        output = bdir / results.output_name(seed)
        if output.exists():
            continue  # finished earlier: only metrics are recomputed
        already = {p: r for p, r in results.read_async(results.async_path(output)).items() if p < n_rows}
        work.append(SeedWork(seed, output, [i for i in range(n_rows) if i not in already], already))
    return work


def output_row(spec: BenchmarkSpec, row: dict, gen: Generation) -> dict:
    """Every input field plus the generation fields (NeMo-Skills names; ours: nfe)."""
    out = dict(row)
    out.update({spec.generation_key: gen.text, "num_generated_tokens": gen.num_generated_tokens,
                "finish_reason": gen.finish_reason, "nfe": gen.nfe, "generation_start_time": gen.start,
                "generation_end_time": gen.end, "generation_time": gen.end - gen.start})
    if gen.error:
        out["error"] = gen.error
    return out


def write_settings(output_dir: Path, spec: BenchmarkSpec, settings: DecodingSettings) -> None:
    path = results.bench_dir(output_dir, spec.name) / "generation_settings.json"
    results.write_text_atomic(path, json.dumps(asdict(settings), indent=2) + "\n")


def write_benchmark_metrics(spec: BenchmarkSpec, bdir: Path, rows_by_seed: Optional[list[list[dict]]] = None) -> dict:
    """Compute metrics.json from the final output files of one benchmark folder."""
    if rows_by_seed is None:
        rows_by_seed = [results.read_jsonl(path) for _, path in results.find_outputs(bdir)]
    metrics = compute_metrics(spec.name, spec.metric, rows_by_seed)
    results.write_metrics(bdir, metrics)
    return metrics
