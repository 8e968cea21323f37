"""Chat with a tri-mode model in-process: mode defaults, one conversation, one reply at a time.

The chat scripts are thin wrappers around `ChatSession`. It builds the chat-template prompt from
the running message history, hands one `GenerationRequest` to the engine of the current mode,
streams committed text to a callback and returns the reply with its NFE / TPF figures.
No server is involved: the engines from `xp.dlm_generate` run in this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

MODES = ("ar", "dlm", "linear_spec", "linear_spec_lora")
DEFAULT_MODEL = "nvidia/Nemotron-Labs-Diffusion-8B"
LORA_SUBDIR = "linear_spec_lora"  # where upstream keeps the draft adapter inside the HF repo


@dataclass(frozen=True)
class ModeSpec:
    """How one chat mode maps onto an engine and its request fields (upstream defaults)."""

    engine: str
    block_length: int
    threshold: Optional[float]
    linear_speculation: bool = False
    use_draft_lora: bool = False


MODE_SPECS = {
    "ar": ModeSpec("ar_native", block_length=1, threshold=None),
    "dlm": ModeSpec("nemotron", block_length=8, threshold=0.9),
    "linear_spec": ModeSpec("nemotron", block_length=32, threshold=0.0, linear_speculation=True),
    "linear_spec_lora": ModeSpec("nemotron", block_length=32, threshold=0.0, linear_speculation=True,
                                 use_draft_lora=True),
}


class ChatError(ValueError):
    """A user mistake (bad mode, missing adapter, bad value); the message says what to do."""


@dataclass(frozen=True)
class ChatSettings:
    """Decoding knobs for the next reply; `for_mode` fills in the mode's block and threshold."""

    mode: str = "dlm"
    max_new_tokens: int = 512
    block_length: int = 8
    threshold: Optional[float] = 0.9
    temperature: float = 0.0
    enable_thinking: bool = False

    @classmethod
    def for_mode(cls, mode: str, **overrides) -> "ChatSettings":
        """The mode's defaults with `overrides` applied literally (threshold=None means 'none')."""
        spec = mode_spec(mode)
        base = cls(mode=mode, block_length=spec.block_length, threshold=spec.threshold)
        return replace(base, **overrides).checked()

    def checked(self) -> "ChatSettings":
        mode_spec(self.mode)
        if self.max_new_tokens < 1:
            raise ChatError(f"max new tokens must be >= 1, got {self.max_new_tokens}")
        if self.block_length < 1:
            raise ChatError(f"block length must be >= 1, got {self.block_length}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ChatError(f"threshold must be in [0, 1] (or none), got {self.threshold}")
        if self.temperature < 0:
            raise ChatError(f"temperature must be >= 0, got {self.temperature}")
        return self


def mode_spec(mode: str) -> ModeSpec:
    if mode not in MODE_SPECS:
        raise ChatError(f"unknown mode '{mode}'; choose one of: {', '.join(MODES)}")
    return MODE_SPECS[mode]


@dataclass
class Reply:
    """One assistant turn and how it was decoded."""

    text: str
    tokens: list[int]
    nfe: int
    seconds: float
    finish_reason: str
    token_pass: list[int] = field(default_factory=list)
    acceptance_lengths: Optional[list[int]] = None

    @property
    def tpf(self) -> float:
        """Tokens per forward: completion tokens / decoding forwards (prefill excluded)."""
        return len(self.tokens) / self.nfe if self.nfe else 0.0

    def stats_line(self, mode: str) -> str:
        line = (f"[{mode}] tokens={len(self.tokens)} NFE={self.nfe} TPF={self.tpf:.2f} "
                f"time={self.seconds:.2f}s finish={self.finish_reason}")
        if self.acceptance_lengths:
            mean = sum(self.acceptance_lengths) / len(self.acceptance_lengths)
            line += f" cycles={len(self.acceptance_lengths)} mean_acceptance={mean:.2f}"
        return line


def default_lora_path(model: str) -> Optional[str]:
    """The draft adapter that ships with a checkpoint (`<checkpoint>/linear_spec_lora`), if any.

    Resolving a hub id fetches it (adapter included) as `load_model` would; a bad --model raises
    the loader's ModelLoadError here already.
    """
    from xp.model.loader import resolve_checkpoint  # noqa: PLC0415 (heavy import only when needed)

    candidate = Path(resolve_checkpoint(model)) / LORA_SUBDIR
    return str(candidate) if (candidate / "adapter_config.json").is_file() else None


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        return dtype
    return "fp32" if device == "cpu" else "bf16"


TextSink = Callable[[str], None]


class ChatSession:
    """A conversation with one loaded model; engines are created once per name and reused."""

    def __init__(self, bundle, settings: ChatSettings):
        self.bundle = bundle
        self.settings = settings.checked()
        self.messages: list[dict] = []
        self._engines: dict = {}
        self._check_lora(settings.mode)

    def reset(self) -> None:
        self.messages = []

    def set_mode(self, mode: str) -> None:
        """Switch mode; block length and threshold go back to that mode's defaults."""
        self._check_lora(mode)
        s = self.settings
        self.settings = ChatSettings.for_mode(mode, max_new_tokens=s.max_new_tokens,
                                              temperature=s.temperature,
                                              enable_thinking=s.enable_thinking)

    def update(self, **changes) -> None:
        self.settings = replace(self.settings, **changes).checked()

    def _check_lora(self, mode: str) -> None:
        if mode_spec(mode).use_draft_lora and not self.bundle.has_lora:
            raise ChatError(f"mode '{mode}' needs the draft LoRA adapter, but none is loaded; "
                            "start with --lora-path DIR (a PEFT adapter folder)")

    def _engine(self, name: str):
        from xp.dlm_generate import get_engine  # noqa: PLC0415

        if name not in self._engines:
            self._engines[name] = get_engine(name, self.bundle)
        return self._engines[name]

    def prompt_ids(self, messages: list[dict]) -> tuple[int, ...]:
        tok = self.bundle.tokenizer
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                       enable_thinking=self.settings.enable_thinking)
        return tuple(tok.encode(text, add_special_tokens=False))

    def request(self, messages: list[dict]):
        from xp.dlm_generate.types import GenerationRequest  # noqa: PLC0415

        s, spec = self.settings, mode_spec(self.settings.mode)
        return GenerationRequest(
            prompt_ids=self.prompt_ids(messages), max_new_tokens=s.max_new_tokens,
            block_length=s.block_length, threshold=s.threshold, temperature=s.temperature,
            linear_speculation=spec.linear_speculation, use_draft_lora=spec.use_draft_lora)

    def send(self, user_text: str, on_text: Optional[TextSink] = None) -> Reply:
        """Answer one user message; the turn joins the history only when decoding succeeded."""
        messages = self.messages + [{"role": "user", "content": user_text}]
        req = self.request(messages)
        stream = _TextStream(self.bundle.tokenizer, on_text)
        start = time.perf_counter()
        result = self._engine(mode_spec(self.settings.mode).engine).generate(
            [req], on_commit=stream.on_commit)[0]
        seconds = time.perf_counter() - start
        text = self.decode(result.tokens)
        stream.finish(text)
        self.messages = messages + [{"role": "assistant", "content": text}]
        return Reply(text=text, tokens=list(result.tokens), nfe=result.nfe, seconds=seconds,
                     finish_reason=result.finish_reason, token_pass=list(result.token_pass),
                     acceptance_lengths=result.acceptance_lengths)

    def decode(self, tokens: list[int]) -> str:
        return decode_visible(self.bundle.tokenizer, tokens).strip()

    def pass_groups(self, reply: Reply) -> list[tuple[int, str]]:
        """(pass index, text) for each run of consecutive tokens committed by the same pass."""
        groups: list[tuple[int, list[int]]] = []
        for tok, p in zip(reply.tokens, reply.token_pass):
            if groups and groups[-1][0] == p:
                groups[-1][1].append(tok)
            else:
                groups.append((p, [tok]))
        return [(p, decode_visible(self.bundle.tokenizer, ids)) for p, ids in groups]


THINK_MARKERS = ("<think>", "</think>")


def decode_visible(tokenizer, ids: list[int]) -> str:
    """Text without special tokens (EOS, padding, ...) but with the thinking markers kept."""
    kept = {tokenizer.convert_tokens_to_ids(t) for t in THINK_MARKERS}
    hidden = set(tokenizer.all_special_ids) - kept
    return tokenizer.decode([i for i in ids if i not in hidden], skip_special_tokens=False)


class _TextStream:
    """Turns committed token ids into printable text as they arrive (the engine commits in order)."""

    def __init__(self, tokenizer, sink: Optional[TextSink]):
        self.tokenizer, self.sink = tokenizer, sink
        self.ids: list[int] = []
        self.shown = ""

    def on_commit(self, row: int, token_ids: list[int], pass_index: int) -> None:
        if self.sink is None or row != 0:
            return
        self.ids.extend(token_ids)
        text = decode_visible(self.tokenizer, self.ids).lstrip()
        # Hold back a trailing replacement char: a multi-byte character may be half decoded.
        if text.startswith(self.shown) and not text.endswith("\ufffd"):
            self.sink(text[len(self.shown):])
            self.shown = text

    def finish(self, final_text: str) -> None:
        if self.sink is None:
            return
        if final_text.startswith(self.shown):
            self.sink(final_text[len(self.shown):])
        self.shown = final_text
