"""metrics.json: NeMo-Skills' shape, pass@k against brute force, majority ties, statistics,
subsets, and our average_nfe / tpf."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from xp.nemo_skills.metrics import MetricsError, compute_metrics, pass_at_k


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> float:
    """Share of all k-subsets of the n samples that contain at least one correct one."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_pass_at_k_matches_brute_force(n):
    rng = random.Random(n)
    for _ in range(20):
        outcomes = [rng.random() < 0.4 for _ in range(n)]
        for k in range(1, n + 1):
            assert pass_at_k(n, sum(outcomes), k) == pytest.approx(brute_force_pass_at_k(outcomes, k))


def make_runs(scores: list[list[bool]], answers=None, tokens=10, nfe=4) -> list[list[dict]]:
    """scores[i][j]: problem i, run j -> runs[j][i] rows with NeMo-Skills math fields."""
    n = len(scores[0])
    runs = []
    for j in range(n):
        rows = []
        for i, s in enumerate(scores):
            ans = answers[i][j] if answers else ("gold" if s[j] else "wrong")
            rows.append({"expected_answer": "gold", "predicted_answer": ans, "symbolic_correct": s[j],
                         "num_generated_tokens": tokens, "nfe": nfe, "generation_start_time": 100.0 + i,
                         "generation_end_time": 103.5 + i + j})
        runs.append(rows)
    return runs


def test_single_run_has_only_pass_at_1():
    m = compute_metrics("gsm8k", "math", make_runs([[True], [False], [True], [True]]))
    assert list(m) == ["gsm8k"] and list(m["gsm8k"]) == ["pass@1"]
    p = m["gsm8k"]["pass@1"]
    assert p["symbolic_correct"] == 75.0 and p["no_answer"] == 0.0 and p["num_entries"] == 4
    assert p["avg_tokens"] == 10 and isinstance(p["avg_tokens"], int)
    assert p["gen_seconds"] == int(103.5 + 3 - 100.0)
    assert p["average_nfe"] == 4.0 and p["tpf"] == 2.5


def test_k_runs_modes_and_values_against_brute_force():
    rng = random.Random(7)
    scores = [[rng.random() < 0.5 for _ in range(4)] for _ in range(30)]
    m = compute_metrics("math-500", "math", make_runs(scores))["math-500"]
    expected_modes = {"pass@1", "pass@2", "pass@3", "pass@4", "pass@1[avg-of-2]", "pass@1[avg-of-3]",
                      "pass@1[avg-of-4]", "majority@2", "majority@3", "majority@4"}
    assert set(m) == expected_modes
    for k in range(1, 5):
        brute = 100 * statistics.fmean(brute_force_pass_at_k(s, k) for s in scores)
        assert m[f"pass@{k}"]["symbolic_correct"] == pytest.approx(brute)
    for k in range(2, 5):
        assert m[f"pass@1[avg-of-{k}]"]["symbolic_correct"] == pytest.approx(
            100 * statistics.fmean(statistics.fmean(s[:k]) for s in scores))
        stats = m[f"pass@1[avg-of-{k}]"]["symbolic_correct_statistics"]
        assert set(stats) == {"avg", "std_dev_across_runs", "avg_sample_std_dev", "std_err_across_runs"}


def test_statistics_follow_nemo_skills_definition():
    # NeMo-Skills' own unit-test case: 3 problems x 4 runs
    scores = [[True, False, True, False], [True, True, False, False], [False, True, True, True]]
    m = compute_metrics("b", "math", make_runs(scores))["b"]
    stats = m["pass@1[avg-of-4]"]["symbolic_correct_statistics"]
    assert stats == pytest.approx({"avg": 0.5833333333333334, "std_dev_across_runs": 0.16666666666666666,
                                   "avg_sample_std_dev": 0.5515668461264172, "std_err_across_runs": 0.08333333333333333})
    assert m["pass@1[avg-of-2]"]["symbolic_correct_statistics"]["std_dev_across_runs"] == 0.0


def test_majority_vote_and_ties():
    answers = [["7", "7", "8"], ["1", "2", None], [None, None, None]]
    scores = [[True, True, False], [True, False, False], [False, False, False]]
    m = compute_metrics("b", "math", make_runs(scores, answers))["b"]
    # problem 0: '7' wins (correct); problem 1 at k=2: tie 1 vs 2 -> average 0.5; problem 2: no answer
    assert m["majority@2"]["symbolic_correct"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert m["majority@3"]["symbolic_correct"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert m["majority@3"]["no_answer"] == pytest.approx(100 / 3)
    assert m["pass@1[avg-of-3]"]["no_answer"] == pytest.approx(100 * (0 + 1 / 3 + 1) / 3)


def test_subsets_get_their_own_keys():
    runs = make_runs([[True], [False], [True]])
    for row, sub in zip(runs[0], ["math", "law", "math"]):
        row["subset_for_metrics"] = sub
    m = compute_metrics("mmlu", "multichoice", runs)
    assert set(m) == {"mmlu", "mmlu-law", "mmlu-math"}
    assert m["mmlu-math"]["pass@1"]["symbolic_correct"] == 100.0 and m["mmlu-math"]["pass@1"]["num_entries"] == 2
    assert m["mmlu-law"]["pass@1"]["symbolic_correct"] == 0.0


def test_code_and_ifeval_metric_keys():
    code = [[{"is_correct": True, "num_generated_tokens": 5}, {"is_correct": False, "num_generated_tokens": 5}]]
    m = compute_metrics("human-eval", "evalplus", code)["human-eval"]["pass@1"]
    assert m["passing_base_tests"] == 50.0 and "no_answer" not in m and "average_nfe" not in m

    def if_row(strict, loose):
        return {"instruction_id_list": ["a"] * len(strict), "num_generated_tokens": 3,
                "strict_eval": {"follow_all_instructions": all(strict), "follow_instruction_list": strict},
                "loose_eval": {"follow_all_instructions": all(loose), "follow_instruction_list": loose}}

    runs = [[if_row([True, False], [True, True]), if_row([True], [True])],
            [if_row([False, False], [True, False]), if_row([True], [True])]]
    m = compute_metrics("ifeval", "if", runs)["ifeval"]
    assert set(m) == {"pass@1", "pass@2", "pass@1[avg-of-2]"}
    p1 = m["pass@1"]
    assert p1["prompt_strict_accuracy"] == 50.0 and p1["instruction_strict_accuracy"] == pytest.approx(200 / 3)
    assert p1["prompt_loose_accuracy"] == 100.0 and p1["num_prompts"] == 2 and p1["num_instructions"] == 3
    assert p1["average_score"] == pytest.approx((50 + 200 / 3 + 100 + 100) / 4)
    assert m["pass@1[avg-of-2]"]["prompt_strict_accuracy"] == 50.0


def test_mismatched_runs_are_an_error():
    runs = make_runs([[True, True], [False, False]])
    runs[1] = runs[1][:1]
    with pytest.raises(MetricsError, match="different numbers of rows"):
        compute_metrics("b", "math", runs)
