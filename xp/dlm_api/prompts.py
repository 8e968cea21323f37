"""Prompts to token ids (chat template or raw text/ids) and the completion budget check.

The engines take token ids only; everything about templates and context length lives here.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from xp.dlm_api.errors import APIError
from xp.dlm_api.protocol import ChatMessage


class PromptBuilder:
    def __init__(self, tokenizer, max_model_len: int, vocab_size: Optional[int] = None):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = max(vocab_size or 0, len(tokenizer))

    def chat(self, messages: list[ChatMessage], template_kwargs: dict[str, Any],
             add_generation_prompt: bool = True) -> tuple[int, ...]:
        conversation = [{"role": m.role, "content": m.text()} for m in messages]
        try:
            text = self.tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=add_generation_prompt,
                **template_kwargs)
        except Exception as exc:  # the template raises jinja errors for unsupported role orders etc.
            raise APIError(f"The chat template rejected these messages: {exc}", param="messages") from None
        return self.text(text, add_special_tokens=False)

    def text(self, text: str, add_special_tokens: bool = False) -> tuple[int, ...]:
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        if not ids:
            raise APIError("The prompt is empty after tokenization; send some text.", param="prompt")
        return tuple(ids)

    def completion(self, prompt: Union[str, list[int]], add_special_tokens: bool = False) -> tuple[int, ...]:
        if isinstance(prompt, str):
            return self.text(prompt, add_special_tokens)
        bad = [t for t in prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise APIError(f"Prompt token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1}).",
                           param="prompt")
        return tuple(prompt)


def completion_budget(prompt_len: int, requested: Optional[int], default: int, max_model_len: int) -> int:
    """Tokens to generate. An explicit request must fit the model length (vLLM's rule and
    message); a missing one (null) fills what is left, up to the worker default."""
    room = max_model_len - prompt_len
    if requested is None:
        if room <= 0:
            raise _too_long(prompt_len, 0, max_model_len)
        return min(default, room)
    if requested > room:
        raise _too_long(prompt_len, requested, max_model_len)
    return requested


def _too_long(prompt_len: int, completion: int, max_model_len: int) -> APIError:
    return APIError(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_len + completion} tokens ({prompt_len} in the prompt, {completion} for the completion). "
        "Please reduce the length of the prompt or of max_tokens.", param="messages",
        code="context_length_exceeded")
