"""The contract between the decoding engines and everything that calls them.

Workers, evaluate.py, the chat scripts and the benchmarks build `GenerationRequest`s, hand a
list of them to an engine's `generate`, and read back one `GenerationResult` per request, in
order. The engines know nothing about HTTP, datasets or chat templates: prompts arrive as
token ids, results leave as token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Protocol

FinishReason = Literal["stop", "length"]


class GenerationError(ValueError):
    """A request that cannot be served as given (bad settings, prompt too long, ...).

    The message is written for the user: it says what was wrong and what to change.
    """


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and the settings to decode it with.

    `block_length` is ignored by `ar_native`. `threshold=None` means one token per denoise step
    (diffusion) or one draft pass (speculation, same as 0.0). `max_new_tokens` counts completion
    tokens; diffusion rounds it down to whole blocks (at least one block).
    """

    prompt_ids: tuple[int, ...]
    max_new_tokens: int = 512
    block_length: int = 8
    threshold: Optional[float] = 0.9
    temperature: float = 0.0
    seed: Optional[int] = None
    linear_speculation: bool = False
    use_draft_lora: bool = False          # LoRA active in draft passes (never in prefill/verify)
    max_thinking_tokens: Optional[int] = None
    eos_early_stop: bool = True
    steps: Optional[int] = None           # accepted for compatibility; diffusion uses block_length steps per block
    request_id: str = ""

    def decoding_key(self) -> tuple:
        """Requests with equal keys may share one batch."""
        return (self.block_length, self.threshold, self.linear_speculation, self.use_draft_lora,
                self.temperature > 0)


@dataclass
class GenerationResult:
    """What one request produced.

    `tokens` are completion ids only (no prompt), including the EOS token when one ended the
    generation. `nfe` counts decoding forwards excluding the prefill (Table-5 / NeMo-Skills
    convention); `prefill_nfe` is the prefill (1), so `nfe + prefill_nfe` is evaluate.py's
    upstream convention. `token_pass[i]` is the index (0-based, counted in this request's own
    forwards after prefill) of the forward pass whose output committed `tokens[i]`, for
    visualising parallel decoding. `acceptance_lengths` is one entry per speculation cycle
    (accepted tokens incl. the bonus token), None for other modes.
    """

    tokens: list[int]
    nfe: int
    finish_reason: FinishReason
    prefill_nfe: int = 1
    token_pass: list[int] = field(default_factory=list)
    acceptance_lengths: Optional[list[int]] = None
    seconds: float = 0.0


# Called by engines as tokens become final: (row index in the batch, newly committed token ids,
# the pass index that committed them). Lets servers stream text block by block.
CommitCallback = Callable[[int, list[int], int], None]


class Engine(Protocol):
    name: str

    def generate(self, requests: list[GenerationRequest],
                 on_commit: Optional[CommitCallback] = None) -> list[GenerationResult]:
        """Decode a batch. Rows may have different prompt lengths and settings that share a
        `decoding_key`; each row finishes on its own."""
        ...
