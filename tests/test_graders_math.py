"""Math grading on the real data: every gold answer fed back as \\boxed{gold} in an output file and
re-graded by `summarize` is correct; a perturbed answer is wrong."""

from __future__ import annotations

import json

import pytest

from nemo_skills_helpers import prepare_all, write_outputs
from xp.nemo_skills.data import load_rows
from xp.nemo_skills.graders.math_grader import last_boxed, math_equal
from xp.nemo_skills.registry import load_registry
from xp.nemo_skills.summarize import main as summarize

MATH_BENCHES = ("gsm8k", "math-500", "aime24", "aime25")
EXPECTED_ROWS = {"gsm8k": 1319, "math-500": 500, "aime24": 30, "aime25": 30}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_all(tmp_path_factory.mktemp("data"), MATH_BENCHES)


def perturb(answer) -> str:
    text = str(answer).strip()
    if text.lstrip("-").isdigit():
        return str(int(text) + 1)
    return f"{text}+1"


@pytest.mark.parametrize("bench", MATH_BENCHES)
def test_gold_boxed_grades_correct_and_perturbed_wrong(bench, data_dir, tmp_path):
    spec = load_registry().get(bench)
    rows = load_rows(spec, data_dir)
    assert len(rows) == EXPECTED_ROWS[bench]
    for variant, make in (("gold", lambda r: str(r["expected_answer"])), ("perturbed", lambda r: perturb(r["expected_answer"]))):
        out = tmp_path / variant / "eval-results" / bench
        write_outputs(out, [{**r, "generation": f"Reasoning...\nThe answer is \\boxed{{{make(r)}}}.",
                              "num_generated_tokens": 10} for r in rows])
        assert summarize([str(tmp_path / variant), "--benchmarks", bench]) == 0
        graded = [json.loads(line) for line in open(out / "output.jsonl")]
        metrics = json.load(open(out / "metrics.json"))[bench]["pass@1"]
        correct = [g["symbolic_correct"] for g in graded]
        if variant == "gold":
            assert all(correct), [g["expected_answer"] for g in graded if not g["symbolic_correct"]][:5]
            assert metrics["symbolic_correct"] == 100.0 and metrics["no_answer"] == 0.0
        else:
            assert not any(correct), [(g["expected_answer"], g["predicted_answer"]) for g in graded if g["symbolic_correct"]][:5]
            assert metrics["symbolic_correct"] == 0.0
        assert metrics["num_entries"] == len(rows)


@pytest.mark.parametrize("gt,pred,ok", [
    ("18", "18.00", True), ("18", "\\$18", True), ("1000", "1,000", True), ("\\frac{1}{2}", "0.5", True),
    ("3\\sqrt{13}", "\\sqrt{117}", True), ("x^2+1", "1+x^2", True), ("10\\%", "10", True),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True), ("C", "\\text{(C)}", True),
    ("18", "19", False), ("\\frac{1}{2}", "\\frac{1}{3}", False), ("C", "D", False), ("5", None, False),
])
def test_math_equal_equivalences(gt, pred, ok):
    assert math_equal(gt, pred) is ok


def test_last_boxed_extraction():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert last_boxed("so \\boxed 5$.") == "5"
    assert last_boxed("cut \\boxed{\\frac{1}{2") is None
    assert last_boxed("no box at all") is None


def test_no_box_is_no_answer(tmp_path):
    spec = load_registry().get("gsm8k")
    from xp.nemo_skills.graders import grade_row

    row = grade_row(spec, {"expected_answer": 3, "generation": "the answer is 3"})
    assert row == {"predicted_answer": None, "symbolic_correct": False}
