"""python -m xp.nemo_skills.summarize DIR [--benchmarks a,b]

Re-grades saved output*.jsonl files (no generation), rewrites them and metrics.json, and prints a
table across benchmarks. DIR may be the run's output dir, its eval-results/, or one benchmark folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xp.nemo_skills import results
from xp.nemo_skills.graders import grade_rows
from xp.nemo_skills.metrics import MetricsError, headline
from xp.nemo_skills.registry import BenchmarkSpec, RegistryError, load_registry
from xp.nemo_skills.runner import write_benchmark_metrics

GRADER_FIELDS = ("predicted_answer", "symbolic_correct", "completion", "is_correct", "test_status", "test_seconds",
                 "graded_list", "strict_eval", "loose_eval", "ifeval_tokenizer")


def regrade_benchmark(spec: BenchmarkSpec, bdir: Path, workers: int = 2) -> dict:
    outputs = results.find_outputs(bdir)
    if not outputs:
        raise MetricsError(f"{bdir}: no output*.jsonl files")
    runs = []
    for _, path in outputs:
        rows = [{k: v for k, v in r.items() if k not in GRADER_FIELDS} for r in results.read_jsonl(path)]
        graded = grade_rows(spec, rows, workers)
        results.write_jsonl_atomic(path, graded)
        runs.append(graded)
    return write_benchmark_metrics(spec, bdir, runs)


def benchmark_dirs(root: Path) -> dict[str, Path]:
    """Benchmark folders under any of the accepted layouts."""
    root = Path(root)
    if results.find_outputs(root):
        return {root.name: root}
    base = root / "eval-results" if (root / "eval-results").is_dir() else root
    return {d.name: d for d in sorted(base.iterdir()) if d.is_dir() and "-logs" not in d.name and results.find_outputs(d)}


def print_table(summary: dict[str, tuple[BenchmarkSpec, dict]], console: Optional[Console] = None) -> None:
    table = Table(title="results")
    for col in ("benchmark", "mode", "accuracy", "entries", "avg_tokens", "avg_nfe", "TPF"):
        table.add_column(col, justify="left" if col in ("benchmark", "mode") else "right", no_wrap=True)
    for name, (spec, metrics) in summary.items():
        mode, value = headline(spec.metric, metrics[name])
        m = metrics[name][mode]
        nfe = f"{m['average_nfe']:.1f}" if "average_nfe" in m else "-"
        tpf = f"{m['tpf']:.2f}" if "tpf" in m else "-"
        table.add_row(escape(name), escape(mode), f"{value:.2f}%", str(m["num_entries"]), str(m["avg_tokens"]), nfe, tpf)
    if console is None:
        console = Console()
        if not console.is_terminal:  # logs: do not squeeze the table into 80 columns
            console = Console(width=140)
    console.print(table)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xp.nemo_skills.summarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir")
    parser.add_argument("--benchmarks", default=None, help="comma-separated subset (default: all found)")
    parser.add_argument("--registry", default=None)
    parser.add_argument("--workers", type=int, default=2, help="parallel code-test sandboxes")
    args = parser.parse_args(argv)
    root = Path(args.results_dir)
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    try:
        registry = load_registry(args.registry)
        dirs = benchmark_dirs(root)
        wanted = args.benchmarks.split(",") if args.benchmarks else list(dirs)
        specs = {name: registry.get(name) for name in wanted}
    except (RegistryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = [n for n in wanted if n not in dirs]
    if missing or not wanted:
        print(f"error: no outputs for {', '.join(missing) or 'any benchmark'} under {root}", file=sys.stderr)
        return 2
    summary, failed = {}, 0
    for name, spec in specs.items():
        try:
            summary[name] = (spec, regrade_benchmark(spec, dirs[name], args.workers))
        except (MetricsError, ValueError, KeyError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed += 1
    if summary:
        print_table(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
