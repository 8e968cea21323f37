"""HumanEval / MBPP grading: extract the code as NeMo-Skills does, run the benchmark's own tests
in the sandbox (separate process, time + memory limits, no network).

Only the original (base) tests are available offline, so the result is `is_correct` /
`passing_base_tests`; evalplus' extra "plus" tests are not run.
"""

from __future__ import annotations

from xp.nemo_skills.graders.sandbox import Limits, run_python


def extract_code(generation: str, language: str = "python") -> str:
    """After </think> (empty if thinking never ended), the first ```<language> block, else the
    first ``` block, else the text itself."""
    text = generation or ""
    if "<think>" in text and "</think>" not in text:
        return ""
    text = text.split("</think>")[-1]
    for opener in (f"```{language}", "```"):
        start = text.find(opener)
        if start < 0:
            continue
        body = text[start + len(opener):]
        body = body.split("\n", 1)[1] if "\n" in body else ""  # drop the rest of the fence line
        end = body.find("```")
        return (body if end < 0 else body[:end]).strip("\n").rstrip()
    return text.strip()


def build_program(row: dict, completion: str) -> str:
    """Solution + tests as one Python program that exits 0 only when every test passes."""
    if "entry_point" in row:  # HumanEval: prompt + completion, then check(entry_point)
        return f"{row['prompt']}\n{completion}\n\n{row['test']}\n\ncheck({row['entry_point']})\n"
    setup = row.get("test_setup_code") or ""
    tests = "\n".join(row["test_list"])
    return f"{completion}\n\n{setup}\n{tests}\n"


def grade_code_python(row: dict, generation: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> dict:
    completion = extract_code(generation)
    if not completion:
        return {"completion": "", "is_correct": False, "test_status": "no code"}
    result = run_python(build_program(row, completion), Limits(timeout_s=timeout_s, memory_mb=memory_mb))
    return {"completion": completion, "is_correct": result.ok, "test_status": result.status(),
            "test_seconds": round(result.seconds, 3)}
