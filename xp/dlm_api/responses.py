"""OpenAI response shapes: whole answers, stream chunks and the SSE framing.

Every answer carries `usage.prompt_tokens`, `usage.completion_tokens` (tokens the engine
generated, the count the NFE refers to) and `usage.nfe`. Stream chunks carry the extension field
`nld` = {"pass": [pass index per token committed since the previous chunk], "nfe": forwards so far,
"acceptance_lengths": [tokens per commit in this chunk] (linear speculation) or null}. The engine
reports one pass per commit (for diffusion: the block's commit pass), so the last chunk's `nld`
adds "token_pass" (the pass that unmasked each token), the final NFE and all acceptance lengths.
OpenAI clients ignore the field.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal, Optional

from xp.dlm_generate.types import GenerationResult

Kind = Literal["chat", "text"]


@dataclass(frozen=True)
class Choice:
    text: str
    finish_reason: str
    prompt_tokens: int
    result: GenerationResult


def usage(prompt_tokens: int, results: list[GenerationResult]) -> dict[str, Any]:
    completion = sum(len(r.tokens) for r in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion, "nfe": sum(r.nfe for r in results)}


def answer(kind: Kind, response_id: str, model: str, choices: list[Choice]) -> dict[str, Any]:
    shaped = []
    for i, c in enumerate(choices):
        if kind == "chat":
            shaped.append({"index": i, "message": {"role": "assistant", "content": c.text},
                           "logprobs": None, "finish_reason": c.finish_reason})
        else:
            shaped.append({"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason})
    results = [c.result for c in choices]
    return {
        "id": response_id,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": shaped,
        "usage": usage(sum(c.prompt_tokens for c in choices), results),
        "nld": {"nfe": [r.nfe for r in results],
                "acceptance_lengths": [r.acceptance_lengths for r in results],
                "seconds": [round(r.seconds, 4) for r in results]},
    }


def chunk(kind: Kind, response_id: str, model: str, created: int, text: Optional[str],
          finish_reason: Optional[str] = None, nld: Optional[dict] = None,
          first: bool = False) -> dict[str, Any]:
    if kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
    body = {"id": response_id, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": [choice]}
    if nld is not None:
        body["nld"] = nld
    return body


def usage_chunk(kind: Kind, response_id: str, model: str, created: int, usage_body: dict) -> dict[str, Any]:
    return {"id": response_id, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": [], "usage": usage_body}


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
