"""Math grading as NeMo-Skills does it: the last \\boxed{} answer, compared to the gold answer by
string normalisation first and symbolic equivalence (math-verify / latex2sympy2-extended) second.

math-verify's timeouts use SIGALRM, so grade in a process's main thread (callers that run
concurrently use a process pool).
"""

from __future__ import annotations

import re
from typing import Optional

from latex2sympy2_extended import NormalizationConfig, normalize_latex

_NORM = NormalizationConfig(basic_latex=True, units=True, malformed_operators=True, nits=True,
                            boxed="all", equations=False)


def last_boxed(text: str) -> Optional[str]:
    """Content of the last \\boxed{...} (brace-matched) or `\\boxed x`; None when there is none."""
    if not text:
        return None
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.index("x", start + 4) + 1 if text.startswith("\\fbox", start) else start + len("\\boxed")
    if i < len(text) and text[i] == " ":  # "\boxed 5": up to the next space or $
        return re.split(r"[\s$]", text[i + 1:], maxsplit=1)[0] or None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return None  # unbalanced: the generation was cut inside the box


def _strip(ans: str) -> str:
    ans = ans.strip().replace("\\%", "").replace("%", "")
    ans = re.sub(r"\\text\{\s*\}", "", ans)
    return ans.rstrip(".").strip()


def _as_number(ans: str) -> Optional[float]:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", ans).replace("\\$", "").replace("$", "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def _letter(ans: str) -> Optional[str]:
    text = re.sub(r"\\text(?:bf)?\{([^}]*)\}", r"\1", ans).strip().strip("().:* ")
    return text if re.fullmatch(r"[A-J]", text) else None


def _symbolic_equal(gt: str, pred: str, timeout: int) -> bool:
    from math_verify import parse, verify

    try:
        gold = parse(f"${gt}$", parsing_timeout=timeout)
        target = parse(f"${pred}$", parsing_timeout=timeout)
        return bool(gold and target and verify(gold, target, timeout_seconds=timeout))
    except Exception:  # a parser blow-up on odd text is a wrong answer, never a crash
        return False


def math_equal(gt, pred: Optional[str], timeout: int = 10) -> bool:
    if pred is None:
        return False
    gt, pred = str(gt).strip(), str(pred).strip()
    if re.fullmatch(r"[A-J]", gt):  # multiple-choice gold
        return _letter(pred) == gt
    gt, pred = _strip(gt), _strip(pred)
    if gt == pred:
        return True
    gnum, pnum = _as_number(gt), _as_number(pred)
    if gnum is not None and pnum is not None:
        return abs(gnum - pnum) <= 1e-9 * max(1.0, abs(gnum))
    try:
        if normalize_latex(gt, _NORM) == normalize_latex(pred, _NORM):
            return True
    except Exception:
        pass
    return _symbolic_equal(gt, pred, timeout)


def grade_math(row: dict, generation: str, timeout: int = 10, take_modulo: Optional[int] = None) -> dict:
    pred = last_boxed(generation or "")
    gold = row["expected_answer"]
    if take_modulo and pred is not None and _as_number(pred) is not None:
        pred = str(int(_as_number(pred)) % take_modulo)
    return {"predicted_answer": pred, "symbolic_correct": math_equal(gold, pred, timeout)}
