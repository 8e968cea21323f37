"""Prompt configs by their NeMo-Skills names, so our requests equal what NeMo-Skills would send.

Each config is a system text (empty: no system message) and a user template filled from the
prepared row with str.format-style `{field}` keys. `{examples}` is always empty (zero-shot).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptConfig:
    system: str
    user: str


PROMPTS: dict[str, PromptConfig] = {
    "generic/math": PromptConfig(
        "",
        "Solve the following math problem. Make sure to put the answer (and only answer) inside \\boxed{{}}.\n\n"
        "{examples}{problem}",
    ),
    "generic/codegen": PromptConfig(
        "",
        "Here is a problem for which you need to generate/complete code:\n{question}\n\n"
        "Please continue to complete the function with python programming language. You are not allowed to "
        "modify the given code and do the completion only.\n\n"
        "The solution should be in the following format:\n```python\n# Your code here\n```",
    ),
    "eval/aai/mcq-4choices-boxed": PromptConfig(
        "",
        "Answer the following multiple choice question. The last line of your response should be in the "
        "following format: 'Answer: \\boxed{{A/B/C/D}}' (e.g. 'Answer: \\boxed{{A}}'). \n\n{problem}",
    ),
    "eval/aai/mcq-4choices": PromptConfig(
        "",
        "Answer the following multiple choice question. The last line of your response should be in the "
        "following format: 'Answer: A/B/C/D' (e.g. 'Answer: A').\n\n{problem}",
    ),
    "generic/default": PromptConfig("", "{question}"),
    "eval/livecodebench/cpp_codegen": PromptConfig(
        "",
        "Here is a problem for which you need to generate an executable code in c++ programming language.\n\n"
        "{question}",
    ),
}


class _Row(dict):
    """Format mapping: `{examples}` defaults to empty; other missing keys are an error."""

    def __missing__(self, key: str) -> str:
        if key == "examples":
            return ""
        raise KeyError(key)


def build_messages(prompt_name: str, row: dict) -> list[dict]:
    """Chat messages for one prepared row (the user turn only, unless the config has a system text)."""
    cfg = PROMPTS[prompt_name]
    try:
        user = cfg.user.format_map(_Row(row))
    except KeyError as exc:
        raise ValueError(f"prompt '{prompt_name}' needs field {exc} which the data row lacks; "
                         "re-run prepare_data for this benchmark") from None
    messages = [{"role": "system", "content": cfg.system}] if cfg.system else []
    messages.append({"role": "user", "content": user})
    return messages
