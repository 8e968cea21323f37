"""Multiple choice on the real mmlu and gpqa data (the correct letter grades correct, every other
letter wrong) and IFEval's checkers on all 541 prompts, offline."""

from __future__ import annotations

import random

import pytest

from nemo_skills_helpers import prepare_all
from xp.nemo_skills.data import load_rows
from xp.nemo_skills.graders import grade_row, grade_rows
from xp.nemo_skills.graders.mcq import extract_letter
from xp.nemo_skills.preparers import gpqa
from xp.nemo_skills.registry import load_registry
from nemo_skills_helpers import RAW_DATA


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_all(tmp_path_factory.mktemp("data"), ("mmlu", "gpqa", "ifeval"))


ANSWER_STYLES = ["Thinking...\nAnswer: \\boxed{{{L}}}", "So the answer is\nAnswer: {L}", "**Answer:** {L}",
                 "The final answer is \\boxed{{\\text{{{L}}}}}"]


@pytest.mark.parametrize("bench,n", [("mmlu", 14042), ("gpqa", 198)])
def test_correct_letter_correct_others_wrong(bench, n, data_dir):
    spec = load_registry().get(bench)
    rows = load_rows(spec, data_dir)
    assert len(rows) == n
    rng = random.Random(0)
    for row in rows:
        style = rng.choice(ANSWER_STYLES)
        for letter in "ABCD":
            graded = grade_row(spec, {**row, "generation": style.format(L=letter)})
            assert graded["predicted_answer"] == letter
            assert graded["symbolic_correct"] is (letter == row["expected_answer"])


def test_subsets_and_problem_text(data_dir):
    mmlu = load_rows(load_registry().get("mmlu"), data_dir)
    assert {r["subset_for_metrics"] for r in mmlu} >= {"math", "health", "physics", "law"}
    assert mmlu[0]["problem"].endswith(f"\n\nA) {mmlu[0]['A']}\nB) {mmlu[0]['B']}\nC) {mmlu[0]['C']}\nD) {mmlu[0]['D']}")
    gp = load_rows(load_registry().get("gpqa"), data_dir)
    assert len({r["subset_for_metrics"] for r in gp}) > 3
    assert {r["expected_answer"] for r in gp} == set("ABCD")


def test_gpqa_shuffle_is_reproducible_and_keeps_the_answer():
    first = gpqa([RAW_DATA / "gpqa" / "gpqa_diamond.csv.gz"])
    second = gpqa([RAW_DATA / "gpqa" / "gpqa_diamond.csv.gz"])
    assert first == second
    import csv
    import gzip

    from xp.nemo_skills.preparers import _gpqa_clean

    with gzip.open(RAW_DATA / "gpqa" / "gpqa_diamond.csv.gz", "rt", newline="") as f:
        raw = list(csv.DictReader(f))
    for row, src in zip(first, raw, strict=True):
        assert row[row["expected_answer"]] == _gpqa_clean(src["Correct Answer"])
        wrong = {_gpqa_clean(src[f"Incorrect Answer {i}"]) for i in (1, 2, 3)}
        assert {row[x] for x in "ABCD" if x != row["expected_answer"]} == wrong


def test_letter_extraction_edge_cases():
    assert extract_letter("") is None
    assert extract_letter("I think it is B, but Answer: C") == "C"
    assert extract_letter("no letter here") is None
    assert extract_letter("answer: d") == "D"


def test_ifeval_runs_offline_on_all_541_prompts(data_dir):
    spec = load_registry().get("ifeval")
    rows = load_rows(spec, data_dir)
    assert len(rows) == 541
    graded = grade_rows(spec, [{**r, "response": "This is a short reply. It has two sentences."} for r in rows])
    for g in graded:
        for kind in ("strict_eval", "loose_eval"):
            ev = g[kind]
            assert len(ev["follow_instruction_list"]) == len(g["instruction_id_list"])
            assert ev["follow_all_instructions"] == all(ev["follow_instruction_list"])
        # loose is an upper bound of strict
        assert all(l or not s for s, l in zip(g["strict_eval"]["follow_instruction_list"],
                                              g["loose_eval"]["follow_instruction_list"]))
    assert g["ifeval_tokenizer"] in ("punkt_tab", "punkt-untrained")
    some_pass = sum(g["strict_eval"]["follow_all_instructions"] for g in graded)
    assert 0 < some_pass < 541


def test_ifeval_checker_judges_real_instructions():
    spec = load_registry().get("ifeval")
    row = {"prompt": "Write without commas, in all lowercase.", "key": 1,
           "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"], "kwargs": [{}, {}]}
    good = grade_row(spec, {**row, "response": "all lowercase and no commas here."})
    bad = grade_row(spec, {**row, "response": "Hello, World"})
    assert good["strict_eval"]["follow_instruction_list"] == [True, True]
    assert bad["strict_eval"]["follow_instruction_list"] == [False, False]
    # loose drops the first line: a preamble line no longer breaks the lowercase rule
    wrapped = grade_row(spec, {**row, "response": "Sure Thing\nall lowercase here\nend"})
    assert wrapped["strict_eval"]["follow_instruction_list"][1] is False
    assert wrapped["loose_eval"]["follow_instruction_list"][1] is True
