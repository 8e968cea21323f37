"""IFEval strict and loose checking with the instruction checkers of `if-verifiable` (a packaged
port of google-research's instruction_following_eval), fully offline.

The checkers use NLTK's Punkt data for sentence counting and word tokenisation. When the
`punkt_tab` data is installed it is used (exactly as upstream); when it is not (no network to
download it), sentences are split by an untrained Punkt tokenizer and words by the Treebank
tokenizer without sentence splitting. That only affects the `length_constraints:number_sentences`
instruction on abbreviations; every graded row records which tokenizer ran (`ifeval_tokenizer`).
"""

from __future__ import annotations

import contextlib
import functools
import random
import types

import nltk


@functools.lru_cache(maxsize=1)
def _checkers() -> tuple[dict, str]:
    """The instruction registry, with its tokenizers bound to what this machine has."""
    import langdetect

    try:
        from if_verifiable.ifeval import instructions, instructions_registry, instructions_util
    except ImportError:
        raise RuntimeError("IFEval grading needs the if-verifiable package: pip install if-verifiable==0.1.2") from None

    langdetect.DetectorFactory.seed = 0  # langdetect is random by default: make grades reproducible

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        sentence_tok, mode = nltk.tokenize.PunktTokenizer("english"), "punkt_tab"
        word_tokenize = nltk.word_tokenize
    except LookupError:
        sentence_tok, mode = nltk.tokenize.punkt.PunktSentenceTokenizer(), "punkt-untrained"
        word_tokenize = functools.partial(nltk.word_tokenize, preserve_line=True)
    instructions_util._get_sentence_tokenizer = lambda: sentence_tok
    # instructions.py calls instructions_util.nltk.word_tokenize: give it a view of nltk whose
    # word_tokenize needs no downloaded data, without touching the global nltk module.
    view = types.SimpleNamespace(**{k: getattr(nltk, k) for k in ("tokenize", "data")}, word_tokenize=word_tokenize)
    instructions_util.nltk = view
    instructions.instructions_util = instructions_util
    return instructions_registry.INSTRUCTION_DICT, mode


def _loose_variants(response: str) -> list[str]:
    lines = response.split("\n")
    first, last, both = ("\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(),
                         "\n".join(lines[1:-1]).strip())
    variants = [response, first, last, both]
    return variants + [v.replace("*", "") for v in variants]


@contextlib.contextmanager
def _seeded_random(key: str):
    """The checkers fill arguments a row leaves out with `random` choices; seed them from the row so
    a grade is reproducible and strict and loose check the same instruction, leaving the global
    random state as it was."""
    state = random.getstate()
    random.seed(key)
    try:
        yield
    finally:
        random.setstate(state)


def _follow(row: dict, responses: list[str], registry: dict) -> list[bool]:
    results = []
    for i, instruction_id in enumerate(row["instruction_id_list"]):
        checker = registry[instruction_id](instruction_id)
        kwargs = {k: v for k, v in (row["kwargs"][i] or {}).items() if v is not None}
        with _seeded_random(f"{row['prompt']}|{i}|{instruction_id}"):
            checker.build_description(**kwargs)
            args = checker.get_instruction_args()
            if args and "prompt" in args:
                checker.build_description(prompt=row["prompt"])
        results.append(any(r.strip() and checker.check_following(r) for r in responses))
    return results


def _eval_dict(row: dict, response: str, follows: list[bool]) -> dict:
    return {"follow_all_instructions": all(follows), "follow_instruction_list": follows,
            "instruction_id_list": row["instruction_id_list"], "prompt": row["prompt"], "response": response}


def grade_ifeval(row: dict, generation: str) -> dict:
    registry, mode = _checkers()
    response = (generation or "").split("</think>")[-1] if "</think>" in (generation or "") else (generation or "")
    strict = _follow(row, [response], registry)
    loose = _follow(row, _loose_variants(response), registry)
    return {"strict_eval": _eval_dict(row, response, strict), "loose_eval": _eval_dict(row, response, loose),
            "ifeval_tokenizer": mode}
