"""Request models for the OpenAI-compatible endpoints, and their conversion to decoding settings.

OpenAI fields come first, then the marked extra-params block with the diffusion knobs. Unknown
keys (top_k, min_p, repetition_penalty, logprobs, ...) are accepted and ignored, because
NeMo-Skills' vllm client always sends them. Precedence of every setting: the request, then the
worker's defaults (its CLI flags), then the engine contract's defaults.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xp.dlm_api.errors import APIError, describe_validation_errors

log = logging.getLogger("xp.dlm_api")

INT64 = 2 ** 63 - 1


class _OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_OpenAIModel):
    type: str
    text: Optional[str] = None


class ChatMessage(_OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[Union[str, list[ContentPart]]] = None

    def text(self) -> str:
        """Plain text of the message; only text parts can be served by a text model."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        pieces = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise APIError(f"Message content part of type '{part.type}' is not supported: this "
                               "model reads text parts only.", param="messages")
            pieces.append(part.text)
        return "".join(pieces)


class _SamplingRequest(_OpenAIModel):
    model: Optional[str] = None
    max_tokens: Optional[int] = Field(None, gt=0, le=INT64)
    max_completion_tokens: Optional[int] = Field(None, gt=0, le=INT64)
    temperature: Optional[float] = Field(None, ge=0.0)
    seed: Optional[int] = Field(None, ge=-INT64 - 1, le=INT64)
    stop: Optional[Union[str, list[str]]] = None
    n: Optional[int] = Field(1, ge=1, le=1)
    stream: Optional[bool] = False
    stream_options: Optional[dict[str, Any]] = None
    skip_special_tokens: Optional[bool] = True
    user: Optional[str] = None

    # --- extra params: diffusion decoding (top-level JSON keys, as upstream's server) ---
    block_length: Optional[int] = Field(None, ge=1, le=4096, description="tokens per diffusion block")
    threshold: Optional[float] = Field(None, ge=0.0, le=1.0,
                                       description="confidence threshold; null = one token per step")
    steps: Optional[int] = Field(None, ge=1, description="accepted for compatibility")
    generation_algorithm: Optional[str] = Field(None, description="engine name, e.g. nemotron, ar_native")
    linear_speculation: Optional[bool] = None
    draft_lora_only: Optional[bool] = None
    max_thinking_tokens: Optional[int] = Field(None, ge=0)
    eos_early_stop: Optional[bool] = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value):
        stops = [value] if isinstance(value, str) else (value or [])
        if any(s == "" for s in stops):
            raise ValueError("stop strings must be non-empty")
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def requested_max_tokens(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def include_usage_chunk(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    enable_thinking: Optional[bool] = None
    chat_template_kwargs: Optional[dict[str, Any]] = None
    add_generation_prompt: Optional[bool] = True


PromptInput = Union[str, list[str], list[int], list[list[int]]]


class CompletionRequest(_SamplingRequest):
    prompt: PromptInput
    echo: Optional[bool] = False
    # text prompts usually arrive already templated (NeMo-Skills' text endpoint), BOS included
    add_special_tokens: Optional[bool] = False

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and len(value) == 0:
            raise ValueError("prompt must not be an empty list")
        return value

    def prompts(self) -> list[Union[str, list[int]]]:
        """One entry per prompt: text or token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]
        return list(p)


@dataclass(frozen=True)
class ServerDefaults:
    """The worker's CLI defaults for fields a request leaves out."""

    engine: str = "nemotron"
    max_tokens: int = 512
    block_length: int = 8
    threshold: Optional[float] = 0.9
    temperature: float = 0.0
    linear_speculation: bool = False
    draft_lora_only: bool = False
    max_thinking_tokens: Optional[int] = None
    enable_thinking: bool = False
    eos_early_stop: bool = True


@dataclass(frozen=True)
class DecodingSettings:
    """Everything but the prompt that one generation needs; `max_tokens=None` means fill up
    to the worker's default (bounded by the model length)."""

    engine: str
    max_tokens: Optional[int]
    block_length: int
    threshold: Optional[float]
    temperature: float
    seed: Optional[int]
    linear_speculation: bool
    use_draft_lora: Optional[bool]      # None: the worker decides (see WorkerService._prepare)
    max_thinking_tokens: Optional[int]
    eos_early_stop: bool
    steps: Optional[int]
    stops: tuple[str, ...]
    skip_special_tokens: bool


def to_settings(req: _SamplingRequest, d: ServerDefaults) -> DecodingSettings:
    """Request, then worker defaults. `threshold: null` in the request is meaningful (one token
    per step), so presence is checked, not truthiness."""
    given = req.model_fields_set

    def pick(name: str, default):
        value = getattr(req, name)
        return default if value is None else value

    threshold = req.threshold if "threshold" in given else d.threshold
    return DecodingSettings(
        engine=pick("generation_algorithm", d.engine),
        max_tokens=req.requested_max_tokens(),
        block_length=pick("block_length", d.block_length),
        threshold=threshold,
        temperature=pick("temperature", d.temperature),
        seed=req.seed,
        linear_speculation=pick("linear_speculation", d.linear_speculation),
        use_draft_lora=req.draft_lora_only,
        max_thinking_tokens=pick("max_thinking_tokens", d.max_thinking_tokens),
        eos_early_stop=pick("eos_early_stop", d.eos_early_stop),
        steps=req.steps,
        stops=tuple(req.stop_list()),
        skip_special_tokens=bool(pick("skip_special_tokens", True)),
    )


def thinking_flag(req: ChatCompletionRequest, d: ServerDefaults) -> dict[str, Any]:
    """Chat-template kwargs: chat_template_kwargs, with top-level enable_thinking winning."""
    kwargs = dict(req.chat_template_kwargs or {})
    if req.enable_thinking is not None:
        kwargs["enable_thinking"] = req.enable_thinking
    kwargs.setdefault("enable_thinking", d.enable_thinking)
    return kwargs


Model = TypeVar("Model", bound=BaseModel)


def parse_body(raw: bytes, model: type[Model]) -> Model:
    """Bytes -> validated request, or an APIError(400) saying exactly what is wrong."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(f"Request body is not valid JSON ({exc}). Send a JSON object.") from None
    if not isinstance(data, dict):
        raise APIError(f"Request body must be a JSON object, got {type(data).__name__}.")
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        message, param = describe_validation_errors(exc.errors(include_url=False))
        raise APIError(message, param=param) from None
    if request.model_extra:
        log.debug("ignored request fields: %s", sorted(request.model_extra))
    return request
