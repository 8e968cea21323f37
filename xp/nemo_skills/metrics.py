"""metrics.json in NeMo-Skills' shape: {bench[-subset]: {eval_mode: {metric: value}}}.

Eval modes: one run -> "pass@1" only. k >= 2 runs -> pass@1..pass@k (unbiased estimator
1 - C(n-c,k)/C(n,k) for binary scores), pass@1[avg-of-2..k] (with <score>_statistics), and
majority@2..k for answer-based benchmarks. Scores are percentages 0-100. Every mode also carries
num_entries, avg_tokens, gen_seconds and our additions average_nfe and tpf (tokens / NFE).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Optional

ANSWER_METRICS = ("math", "multichoice")  # have predicted_answer: no_answer + majority@k
SCORE_KEY = {"math": "symbolic_correct", "multichoice": "symbolic_correct", "evalplus": "passing_base_tests",
             "livecodebench": "accuracy"}


class MetricsError(ValueError):
    pass


def row_score(metric: str, row: dict) -> bool:
    if metric in ANSWER_METRICS:
        return bool(row.get("symbolic_correct"))
    return bool(row.get("is_correct"))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for n samples with c correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _majority(answers: list[Optional[str]], scores: list[bool]) -> float:
    valid = [(a, s) for a, s in zip(answers, scores) if a is not None]
    if not valid:
        return 0.0
    counts = Counter(str(a) for a, _ in valid)
    top = max(counts.values())
    first_score = {}
    for a, s in valid:
        first_score.setdefault(str(a), s)
    tied = [a for a, c in counts.items() if c == top]
    return sum(first_score[a] for a in tied) / len(tied)


def _statistics(scores: list[list[bool]], k: int) -> dict:
    """Spread of pass@1 across the first k runs (avg is 0-1, like NeMo-Skills)."""
    runs = [statistics.fmean(float(p[j]) for p in scores) for j in range(k)]
    std_runs = statistics.stdev(runs) if k > 1 else 0.0
    sample_stds = [statistics.stdev([float(x) for x in p[:k]]) for p in scores]
    return {"avg": statistics.fmean(runs), "std_dev_across_runs": std_runs,
            "avg_sample_std_dev": statistics.fmean(sample_stds), "std_err_across_runs": std_runs / math.sqrt(k)}


def _common(problems: list[list[dict]]) -> dict:
    preds = [p for prob in problems for p in prob]
    tokens = [p.get("num_generated_tokens", 0) or 0 for p in preds]
    nfes = [p["nfe"] for p in preds if isinstance(p.get("nfe"), (int, float))]
    starts = [p["generation_start_time"] for p in preds if "generation_start_time" in p]
    ends = [p["generation_end_time"] for p in preds if "generation_end_time" in p]
    out = {"num_entries": len(problems), "avg_tokens": int(sum(tokens) / len(preds)) if preds else 0,
           "gen_seconds": int(max(ends) - min(starts)) if starts and ends else 0}
    if nfes:
        tok_with_nfe = sum(p.get("num_generated_tokens", 0) or 0 for p in preds if isinstance(p.get("nfe"), (int, float)))
        out["average_nfe"] = statistics.fmean(nfes)
        out["tpf"] = tok_with_nfe / sum(nfes) if sum(nfes) > 0 else 0.0
    return out


def _score_modes(metric: str, problems: list[list[dict]]) -> dict:
    n = len(problems[0])
    key = SCORE_KEY[metric]
    scores = [[row_score(metric, p) for p in prob] for prob in problems]
    answers = [[p.get("predicted_answer") for p in prob] for prob in problems] if metric in ANSWER_METRICS else None
    pct = lambda values: 100.0 * statistics.fmean(values)  # noqa: E731
    modes: dict[str, dict] = {}
    for k in range(1, n + 1):
        m = {key: pct([pass_at_k(n, sum(s), k) for s in scores])}
        if answers is not None:
            m["no_answer"] = pct([all(a is None for a in ans[:k]) for ans in answers])
        modes[f"pass@{k}"] = m
    if n == 1:
        return modes
    for k in range(2, n + 1):
        m = {key: pct([statistics.fmean(s[:k]) for s in scores]), f"{key}_statistics": _statistics(scores, k)}
        if answers is not None:
            m["no_answer"] = pct([statistics.fmean(a is None for a in ans[:k]) for ans in answers])
        modes[f"pass@1[avg-of-{k}]"] = m
        if answers is not None:
            modes[f"majority@{k}"] = {
                key: pct([_majority(a[:k], s[:k]) for a, s in zip(answers, scores)]),
                "no_answer": pct([all(x is None for x in a[:k]) for a in answers])}
    return modes


def _if_scores(rows: list[dict]) -> dict:
    """IFEval's four accuracies over one set of rows (one run, or the any-of-k merge)."""
    def acc(kind: str) -> tuple[float, float]:
        prompt = [r[f"{kind}_eval"]["follow_all_instructions"] for r in rows]
        instr = [x for r in rows for x in r[f"{kind}_eval"]["follow_instruction_list"]]
        return 100.0 * statistics.fmean(prompt), 100.0 * sum(instr) / max(1, len(instr))

    (ps, is_), (pl, il) = acc("strict"), acc("loose")
    return {"num_prompts": len(rows), "num_instructions": sum(len(r["instruction_id_list"]) for r in rows),
            "average_score": (ps + is_ + pl + il) / 4, "prompt_strict_accuracy": ps,
            "instruction_strict_accuracy": is_, "prompt_loose_accuracy": pl, "instruction_loose_accuracy": il}


def _any_of(preds: list[dict]) -> dict:
    merged = {"instruction_id_list": preds[0]["instruction_id_list"]}
    for kind in ("strict", "loose"):
        lists = [p[f"{kind}_eval"]["follow_instruction_list"] for p in preds]
        merged[f"{kind}_eval"] = {"follow_all_instructions": any(p[f"{kind}_eval"]["follow_all_instructions"] for p in preds),
                                  "follow_instruction_list": [any(col) for col in zip(*lists)]}
    return merged


def _if_modes(problems: list[list[dict]]) -> dict:
    n = len(problems[0])
    modes = {f"pass@{k}": _if_scores([_any_of(p[:k]) for p in problems]) for k in range(1, n + 1)}
    for k in range(2, n + 1):
        per_run = [_if_scores([p[j] for p in problems]) for j in range(k)]
        modes[f"pass@1[avg-of-{k}]"] = {name: (per_run[0][name] if name.startswith("num_") else
                                               statistics.fmean(r[name] for r in per_run)) for name in per_run[0]}
    return modes


def compute_modes(metric: str, problems: list[list[dict]]) -> dict:
    modes = _if_modes(problems) if metric == "if" else _score_modes(metric, problems)
    common = _common(problems)
    return {mode: {**common, **values} for mode, values in modes.items()}


def compute_metrics(bench: str, metric: str, runs: list[list[dict]]) -> dict:
    """runs[j][i] = row i of run j (all runs in the same input order)."""
    if not runs or not runs[0]:
        raise MetricsError(f"{bench}: no graded rows to compute metrics from")
    sizes = {len(r) for r in runs}
    if len(sizes) != 1:
        raise MetricsError(f"{bench}: output files have different numbers of rows {sorted(sizes)}; "
                           "expected the same problems in every run")
    problems = [list(p) for p in zip(*runs)]
    result = {bench: compute_modes(metric, problems)}
    subsets: dict[str, list] = {}
    for prob in problems:
        if prob[0].get("subset_for_metrics") is not None:
            subsets.setdefault(str(prob[0]["subset_for_metrics"]), []).append(prob)
    for name in sorted(subsets):
        result[f"{bench}-{name}"] = compute_modes(metric, subsets[name])
    return result


def headline(metric: str, bench_metrics: dict) -> tuple[str, float]:
    """(mode, value) that a summary table shows: pass@1 or pass@1[avg-of-k] of the main score."""
    mode = max((m for m in bench_metrics if m.startswith("pass@1[avg-of-")), default="pass@1",
               key=lambda m: int(m.split("-")[-1].rstrip("]")) if "avg-of" in m else 0)
    key = "prompt_strict_accuracy" if metric == "if" else SCORE_KEY[metric]
    return mode, bench_metrics[mode][key]
