"""Multiple-choice letter extraction as NeMo-Skills (relaxed mode): a boxed answer or an
'Answer: X' line, else the last standalone capital letter; correct = exact letter match."""

from __future__ import annotations

import re
from typing import Optional

from xp.nemo_skills.graders.math_grader import last_boxed

_ANSWER_RE = re.compile(r"(?i)[*_]{0,2}Answer[*_]{0,2}\s*:[\s*_]{0,2}\s*([A-Z])(?![a-zA-Z])")
_STANDALONE = re.compile(r"\b([A-Z])\b")


def _letter_from(text: str) -> Optional[str]:
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text).strip()
    if len(text) == 1 and text.isupper():
        return text
    letters = _STANDALONE.findall(text)
    return letters[-1] if letters else None


def extract_letter(generation: str) -> Optional[str]:
    if not generation:
        return None
    boxed = last_boxed(generation)
    if boxed is not None:
        letter = _letter_from(boxed)
        if letter:
            return letter
    matches = _ANSWER_RE.findall(generation)
    return matches[-1].upper() if matches else None


def grade_mcq(row: dict, generation: str) -> dict:
    pred = extract_letter(generation)
    return {"predicted_answer": pred, "symbolic_correct": pred is not None and pred == row["expected_answer"]}
