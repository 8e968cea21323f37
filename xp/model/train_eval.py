"""Measure a model on arith problems per decoding mode through the real engines (accuracy, TPF, acceptance).

Used by `xp.model.train` (a quick check on the training device) and by `bench/arith_modes.py` and the
tests (with the project's math grader). TPF = generated tokens / decoding forwards (prefill
excluded, as everywhere in the project); acceptance = mean accepted tokens per speculation cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from xp.dlm_generate import GenerationRequest, GenerationResult, get_engine


@dataclass(frozen=True)
class ModeSpec:
    mode: str                          # ar | dlm | linear_spec
    block_length: int = 8
    threshold: Optional[float] = 0.9
    lora: bool = False

    @property
    def label(self) -> str:
        if self.mode == "ar":
            return "ar"
        if self.mode == "dlm":
            return f"dlm b{self.block_length} t{self.threshold}"
        return f"linear_spec b{self.block_length} {'lora' if self.lora else 'no-lora'}"


@dataclass
class ModeStats:
    spec: ModeSpec
    n: int
    accuracy: float                    # percent
    tpf: float
    acceptance: Optional[float]
    avg_tokens: float
    outputs: list[list[int]]

    def row(self) -> dict:
        return {"mode": self.spec.label, "n": self.n, "accuracy": round(self.accuracy, 2),
                "tpf": round(self.tpf, 3), "acceptance": None if self.acceptance is None else round(self.acceptance, 3),
                "avg_tokens": round(self.avg_tokens, 1)}


def boxed_equal(text: str, answer) -> bool:
    """Last \\boxed{...} equals the integer answer (a grader needing no extra packages)."""
    found = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return bool(found) and found[-1].strip() == str(answer)


def decode_completion(tokenizer, tokens: list[int], eos: int) -> str:
    if eos in tokens:
        tokens = tokens[:tokens.index(eos)]
    return tokenizer.decode(tokens, skip_special_tokens=True)


def generate(bundle, prompts: list[tuple[int, ...]], spec: ModeSpec, batch_size: int = 64,
             max_new_tokens: int = 96) -> list[GenerationResult]:
    engine = get_engine("ar_native" if spec.mode == "ar" else "nemotron", bundle)
    threshold = None if spec.mode == "ar" else spec.threshold
    reqs = [GenerationRequest(prompt_ids=tuple(p), max_new_tokens=max_new_tokens, block_length=spec.block_length,
                              threshold=threshold, linear_speculation=spec.mode == "linear_spec",
                              use_draft_lora=spec.lora, request_id=str(i)) for i, p in enumerate(prompts)]
    out: list[GenerationResult] = []
    for i in range(0, len(reqs), batch_size):
        out.extend(engine.generate(reqs[i:i + batch_size]))
    return out


def run_mode(bundle, prompts: list[tuple[int, ...]], answers: list, spec: ModeSpec,
             grade: Callable[[str, object], bool] = boxed_equal, batch_size: int = 64,
             max_new_tokens: int = 96) -> ModeStats:
    results = generate(bundle, prompts, spec, batch_size, max_new_tokens)
    texts = [decode_completion(bundle.tokenizer, r.tokens, bundle.eos_token_id) for r in results]
    correct = sum(bool(grade(t, a)) for t, a in zip(texts, answers))
    tokens = sum(len(r.tokens) for r in results)
    nfe = sum(r.nfe for r in results)
    cycles = [a for r in results for a in (r.acceptance_lengths or [])]
    return ModeStats(spec=spec, n=len(results), accuracy=100.0 * correct / max(1, len(results)),
                     tpf=tokens / max(1, nfe), acceptance=sum(cycles) / len(cycles) if cycles else None,
                     avg_tokens=tokens / max(1, len(results)), outputs=[list(r.tokens) for r in results])
