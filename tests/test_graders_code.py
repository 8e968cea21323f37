"""Code grading on the real data: every HumanEval canonical solution and every MBPP reference
solution (test range 11-510) passes; wrong code, an infinite loop, a memory bomb and a network
call fail within the limits, in a separate process, without harming the caller."""

from __future__ import annotations

import json
import os
import resource
import time

import pytest

from nemo_skills_helpers import prepare_all, write_outputs
from xp.nemo_skills.data import load_rows
from xp.nemo_skills.graders import grade_rows
from xp.nemo_skills.graders.code_python import extract_code, grade_code_python
from xp.nemo_skills.registry import load_registry
from xp.nemo_skills.summarize import main as summarize

WORKERS = max(2, os.cpu_count() or 2)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_all(tmp_path_factory.mktemp("data"), ("human-eval", "mbpp"))


def fenced(code: str) -> str:
    return f"Here is the solution:\n```python\n{code}\n```\nDone."


def test_every_humaneval_canonical_solution_passes(data_dir, tmp_path):
    rows = load_rows(load_registry().get("human-eval"), data_dir)
    assert len(rows) == 164
    out = tmp_path / "eval-results" / "human-eval"
    write_outputs(out, [{**r, "generation": fenced(r["prompt"] + r["canonical_solution"])} for r in rows])
    assert summarize([str(tmp_path), "--benchmarks", "human-eval", "--workers", str(WORKERS)]) == 0
    graded = [json.loads(line) for line in open(out / "output.jsonl")]
    failed = [(g["task_id"], g["test_status"]) for g in graded if not g["is_correct"]]
    assert not failed
    assert json.load(open(out / "metrics.json"))["human-eval"]["pass@1"]["passing_base_tests"] == 100.0


def test_every_mbpp_reference_solution_passes(data_dir):
    spec = load_registry().get("mbpp")
    rows = load_rows(spec, data_dir)
    assert len(rows) == 500 and rows[0]["task_id"] == "Mbpp/11" and rows[-1]["task_id"] == "Mbpp/510"
    graded = grade_rows(spec, [{**r, "generation": fenced(r["reference_solution"])} for r in rows], WORKERS)
    failed = [(g["task_id"], g["test_status"]) for g in graded if not g["is_correct"]]
    assert not failed


HE_ROW = {"prompt": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n", "entry_point": "add",
          "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}

BAD_PROGRAMS = {
    "wrong": ("    return a - b\n", "fail"),
    "infinite loop": ("    while True:\n        pass\n", "timeout"),
    "memory bomb": ("    x = [0] * (10 ** 10)\n    return a + b\n", "fail"),
    "growing memory": ("    x = []\n    while True:\n        x.append(' ' * 10 ** 6)\n", "fail"),
    "network": ("    import socket\n    socket.create_connection(('127.0.0.1', 9))\n    return a + b\n", "fail"),
    "exit zero early": ("    raise SystemExit(3)\n", "fail"),
}


@pytest.mark.parametrize("name", sorted(BAD_PROGRAMS))
def test_bad_solutions_fail_within_limits(name):
    body, status = BAD_PROGRAMS[name]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    result = grade_code_python(HE_ROW, fenced(HE_ROW["prompt"] + body), timeout_s=2, memory_mb=512)
    elapsed = time.monotonic() - start
    assert result["is_correct"] is False
    assert result["test_status"] == status or (status == "fail" and result["test_status"].startswith("killed"))
    assert elapsed < 3 * 2 + 5 + 2, f"{name} took {elapsed:.1f}s"  # the wall limit for timeout_s=2, plus slack
    # the grader's own process did not grow by the bomb (it ran in a child)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000


def test_good_solution_passes_and_body_only_completion_works():
    assert grade_code_python(HE_ROW, fenced(HE_ROW["prompt"] + "    return a + b\n"))["is_correct"]
    assert grade_code_python(HE_ROW, fenced("    return a + b"))["is_correct"]


def test_code_extraction_rules():
    assert extract_code("```python\nx = 1\n```\n```python\ny = 2\n```") == "x = 1"
    assert extract_code("text\n```\nplain\n```") == "plain"
    assert extract_code("<think>still thinking ```python\nx=1\n```") == ""
    assert extract_code("<think>a</think>```python\nz = 3\n```") == "z = 3"
    assert extract_code("```python\nunterminated = 1\n") == "unterminated = 1"
