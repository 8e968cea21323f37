"""Turn raw benchmark files into prepared rows (NeMo-Skills field names).

Each preparer takes the list of raw file paths named by the registry (`raw:`) and returns the
rows of the prepared split. Online fetching lives in prepare_data.py; it downloads into a temp
folder laid out like the raw folder and calls the same preparer, so both paths share one parser.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
from pathlib import Path
from typing import Callable, Iterable

Rows = list[dict]


class RawDataError(ValueError):
    """Raw input that is missing or does not look like the benchmark's files."""


def read_jsonl(path: Path) -> Rows:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _int_if_possible(text: str):
    """gsm8k answers: '1,000' -> 1000; keep non-integers as float/str."""
    text = text.replace(",", "").strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def gsm8k(paths: list[Path]) -> Rows:
    rows = []
    for src in read_jsonl(paths[0]):
        solution, _, answer = src["answer"].rpartition("####")
        rows.append({"problem": src["question"], "reference_solution": solution.strip(),
                     "expected_answer": _int_if_possible(answer)})
    return rows


def math500(paths: list[Path]) -> Rows:
    rows = []
    for src in read_jsonl(paths[0]):
        row = {"problem": src["problem"], "expected_answer": src["answer"],
               "reference_solution": src.get("solution", "")}
        row.update({k: src[k] for k in ("subject", "level", "unique_id") if k in src})
        rows.append(row)
    return rows


def _aime_answer(text) -> str:
    """AIME answers are integers 0-999; copies write '025' or '336^\\circ'; NeMo-Skills keeps '25'/'336'."""
    text = str(text).strip().replace("^\\circ", "").replace("^{\\circ}", "")
    return str(int(text)) if text.isdigit() else text


def aime24(paths: list[Path]) -> Rows:
    return [{"id": src.get("id", i), "problem": src["problem"], "expected_answer": _aime_answer(src["answer"]),
             "reference_solution": src.get("solution", ""), "url": src.get("url", "")}
            for i, src in enumerate(read_jsonl(paths[0]))]


def aime25(paths: list[Path]) -> Rows:
    rows = []
    for path in paths:
        part = "II" if "-II" in path.name else "I"
        for i, src in enumerate(read_jsonl(path), start=1):
            rows.append({"id": f"aime25-{part}-{i}", "problem": src.get("question") or src["problem"],
                         "expected_answer": _aime_answer(src["answer"])})
    return rows


def humaneval(paths: list[Path]) -> Rows:
    rows = []
    for src in read_jsonl(paths[0]):
        row = dict(src)
        row["question"] = src["prompt"].replace("    ", "\t")  # as NeMo-Skills' human-eval prepare
        rows.append(row)
    return rows


MBPP_TEST_RANGE = range(11, 511)  # standard split: tasks 11-510 are the test set


def mbpp(paths: list[Path]) -> Rows:
    rows = []
    for src in read_jsonl(paths[0]):
        if int(src["task_id"]) not in MBPP_TEST_RANGE:
            continue
        text = src["text"].strip()
        # evalplus-style prompt: the description plus one test so the function name is known
        prompt = f'"""\n{text}\n{src["test_list"][0]}\n"""\n'
        rows.append({"task_id": f"Mbpp/{src['task_id']}", "question": prompt, "prompt": "",
                     "text": text, "reference_solution": src["code"], "test_list": src["test_list"],
                     "test_setup_code": src.get("test_setup_code", ""),
                     "challenge_test_list": src.get("challenge_test_list", [])})
    return rows


# Hendrycks' subject -> category table (the categories NeMo-Skills reports as mmlu-<category>).
MMLU_CATEGORY = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
LETTERS = "ABCD"


def mcq_fields(question: str, choices: list[str], sep: str = ") ", joiner: str = "\n\n") -> dict:
    options = "\n".join(f"{LETTERS[i]}{sep}{c}" for i, c in enumerate(choices))
    return {"problem": f"{question.strip(chr(10))}{joiner}{options}", "options": options,
            **{LETTERS[i]: c for i, c in enumerate(choices)}}


def _mmlu_answer(value: str) -> str:
    value = value.strip()
    return LETTERS[int(value)] if value.isdigit() else value.upper()


def mmlu(paths: list[Path]) -> Rows:
    folder = paths[0]
    files = sorted(folder.glob("*_test.csv")) if folder.is_dir() else []
    if not files:
        raise RawDataError(f"no <subject>_test.csv files in {folder}")
    rows = []
    for path in files:
        subject = path.name[: -len("_test.csv")]
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for rec in reader:
                if len(rec) != 6 or rec[-1] == "answer":  # skip a header row if present
                    continue
                row = mcq_fields(rec[0], rec[1:5])
                row.update({"expected_answer": _mmlu_answer(rec[5]), "subject": subject,
                            "subset_for_metrics": MMLU_CATEGORY.get(subject, "other")})
                rows.append(row)
    return rows


GPQA_SEED = 42


def _gpqa_clean(text) -> str:
    """GPQA text cleanup as NeMo-Skills (after lm-eval): drop [bracketed] notes, fix spacing."""
    if text is None:
        return " "
    text = str(text).strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def gpqa_row(src: dict, rng: random.Random) -> dict:
    choices = [_gpqa_clean(src[f"Incorrect Answer {i}"]) for i in (1, 2, 3)] + [_gpqa_clean(src["Correct Answer"])]
    rng.shuffle(choices)
    correct = choices.index(_gpqa_clean(src["Correct Answer"]))
    row = mcq_fields(src["Question"], choices, sep=". ", joiner="\n")
    difficulty = src.get("Writer's Difficulty Estimate")
    row.update({"expected_answer": LETTERS[correct], "explanation": _gpqa_clean(src.get("Explanation")),
                "subset_for_metrics": src["Subdomain"],
                "difficulty": re.split(r"\s*\(", difficulty)[0] if difficulty else None})
    return row


def gpqa(paths: list[Path]) -> Rows:
    path = paths[0]
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rng = random.Random(GPQA_SEED)  # as NeMo-Skills: seed 42 once, shuffle rows in dataset order
        return [gpqa_row(rec, rng) for rec in csv.DictReader(f)]


def ifeval(paths: list[Path]) -> Rows:
    rows = []
    for src in read_jsonl(paths[0]):
        row = dict(src)
        row["question"] = src["prompt"]
        rows.append(row)
    return rows


LCB_WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose "
                    "your code within delimiters.")
LCB_WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not "
                       "directly test on the sample inputs). Enclose your code within delimiters as follows. "
                       "Ensure that when the c++ program runs, it reads the inputs, runs the algorithm and writes "
                       "output to STDOUT.")


def livecodebench_cpp(paths: list[Path]) -> Rows:
    """Rows of nvidia/LiveCodeBench-CPP (question_content, starter_code, *_test_cases, difficulty...)."""
    rows = []
    for src in read_jsonl(paths[0]):
        if "question" in src and "question_content" not in src:  # already prepared
            rows.append(src)
            continue
        question = src["question_content"] + "\n\n"
        if src.get("starter_code"):
            question += f"{LCB_WITH_STARTER}\n```cpp\n{src['starter_code']}\n```\n\n"
        else:
            question += f"{LCB_WITHOUT_STARTER}\n\n```cpp\n// YOUR CODE HERE\n```\n\n"
        rows.append({"task_id": src["question_id"], "question": question.replace("    ", "\t"),
                     "difficulty": src.get("difficulty"), "subset_for_metrics": src.get("difficulty"),
                     "public_test_cases": src.get("public_test_cases"),
                     "private_test_cases": src.get("private_test_cases"),
                     "contest_date": str(src.get("contest_date", ""))})
    return rows


PREPARERS: dict[str, Callable[[list[Path]], Rows]] = {
    "gsm8k": gsm8k, "math500": math500, "aime24": aime24, "aime25": aime25, "humaneval": humaneval,
    "mbpp": mbpp, "mmlu": mmlu, "gpqa": gpqa, "ifeval": ifeval, "livecodebench_cpp": livecodebench_cpp,
}


def get_preparer(name: str) -> Callable[[list[Path]], Rows]:
    """A preparer by registry name: built-in, or "package.module:function" for external benchmarks."""
    if name in PREPARERS:
        return PREPARERS[name]
    if ":" in name:
        import importlib

        module, _, func = name.partition(":")
        return getattr(importlib.import_module(module), func)
    raise RawDataError(f"unknown preparer '{name}'; built-in: {', '.join(PREPARERS)}")


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    """Write rows to `path` via a temp file + rename so a crash never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


__all__ = ["PREPARERS", "get_preparer", "write_jsonl_atomic", "RawDataError", "read_jsonl"]
