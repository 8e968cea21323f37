"""Graders by registry name. Each is a plain function `(row, generation, **grader_args) -> fields`
that adds NeMo-Skills' grader fields to an output row; all are picklable (run in process pools)."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from xp.nemo_skills.registry import BenchmarkSpec

GRADER_FUNCS = {
    "math": ("xp.nemo_skills.graders.math_grader", "grade_math"),
    "multichoice": ("xp.nemo_skills.graders.mcq", "grade_mcq"),
    "code_python": ("xp.nemo_skills.graders.code_python", "grade_code_python"),
    "code_cpp": ("xp.nemo_skills.graders.code_cpp", "grade_code_cpp"),
    "ifeval": ("xp.nemo_skills.graders.ifeval_grader", "grade_ifeval"),
}
# Graders whose work is in a child process: threads are enough to run them in parallel.
SUBPROCESS_GRADERS = {"code_python", "code_cpp"}


def get_grader(name: str) -> Callable[..., dict]:
    module, func = GRADER_FUNCS[name]
    return getattr(importlib.import_module(module), func)


def warm_up() -> None:
    """Import every grader (run once in a fresh pool process so the first real grade is fast)."""
    for name in GRADER_FUNCS:
        get_grader(name)


def grade_row(spec: BenchmarkSpec, row: dict) -> dict:
    """Grade one output row (reads the generation from the benchmark's generation key)."""
    generation = row.get(spec.generation_key) or ""
    return get_grader(spec.grader)(row, generation, **spec.grader_args)


def grade_rows(spec: BenchmarkSpec, rows: list[dict], workers: int = 2) -> list[dict]:
    """Grade many rows in place order; code graders run `workers` sandboxes at a time."""
    if spec.grader in SUBPROCESS_GRADERS and workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            fields = list(pool.map(lambda r: grade_row(spec, r), rows))
    else:
        fields = [grade_row(spec, r) for r in rows]
    return [{**row, **f} for row, f in zip(rows, fields)]


def is_correct(spec: BenchmarkSpec, row: dict) -> bool:
    """The headline correctness of a graded row (for progress bars and summaries)."""
    if spec.grader in ("math", "multichoice"):
        return bool(row.get("symbolic_correct"))
    if spec.grader == "ifeval":
        return bool(row.get("strict_eval", {}).get("follow_all_instructions"))
    return bool(row.get("is_correct"))
