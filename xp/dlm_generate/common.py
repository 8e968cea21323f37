"""Pieces shared by the engines: request validation, token choice, prefill, per-row bookkeeping.

Batches run in lockstep: every forward covers all still-running rows (each with its own cache
length), and finished rows are dropped from the batch (`Rows.compact`). Per-row counters (NFE,
token passes) only count forwards in which the row took part, so a row reports the same numbers
alone or in a batch.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from xp.dlm_generate.types import CommitCallback, GenerationError, GenerationRequest, GenerationResult


def validate(requests: list[GenerationRequest], bundle, *, diffusion: bool) -> None:
    """Raise GenerationError for the first request that cannot be served as given."""
    vocab = bundle.config.vocab_size
    for i, r in enumerate(requests):
        where = f"request {r.request_id or i}"
        if not r.prompt_ids:
            raise GenerationError(f"{where}: the prompt is empty; send at least one token")
        if min(r.prompt_ids) < 0 or max(r.prompt_ids) >= vocab:
            raise GenerationError(f"{where}: prompt token ids must be in [0, {vocab})")
        if not isinstance(r.max_new_tokens, int) or r.max_new_tokens <= 0:
            raise GenerationError(f"{where}: max_new_tokens must be a positive integer, got {r.max_new_tokens!r}")
        if r.temperature < 0:
            raise GenerationError(f"{where}: temperature must be >= 0, got {r.temperature}")
        if r.max_thinking_tokens is not None and r.max_thinking_tokens < 0:
            raise GenerationError(f"{where}: max_thinking_tokens must be >= 0, got {r.max_thinking_tokens}")
        if r.max_thinking_tokens is not None and bundle.end_think_token_id is None:
            raise GenerationError(f"{where}: max_thinking_tokens is set but the tokenizer has no </think> token")
        new_tokens = r.max_new_tokens
        if diffusion:
            if not isinstance(r.block_length, int) or r.block_length < 1:
                raise GenerationError(f"{where}: block_length must be an integer >= 1, got {r.block_length!r}")
            if r.threshold is not None and not 0.0 <= r.threshold <= 1.0:
                raise GenerationError(f"{where}: threshold must be in [0, 1] (or null), got {r.threshold}")
            if r.use_draft_lora and not bundle.has_lora:
                raise GenerationError(f"{where}: the draft LoRA was requested but no adapter is loaded; "
                                      "start the model with --lora-path or drop draft_lora_only")
            if not r.linear_speculation:
                new_tokens = diffusion_budget(r)
        if len(r.prompt_ids) + new_tokens > bundle.max_model_len:
            raise GenerationError(f"{where}: prompt ({len(r.prompt_ids)} tokens) + max_new_tokens ({new_tokens}) "
                                  f"exceeds the model length {bundle.max_model_len}; shorten the prompt or "
                                  "lower max_new_tokens")


def diffusion_budget(r: GenerationRequest) -> int:
    """max_new_tokens rounded down to whole blocks, at least one block."""
    return max(1, r.max_new_tokens // r.block_length) * r.block_length


def group_by_key(requests: list[GenerationRequest]) -> list[list[int]]:
    """Indices of requests grouped by decoding_key (order of first appearance)."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.decoding_key(), []).append(i)
    return list(groups.values())


def make_generators(requests: list[GenerationRequest], device: torch.device) -> list[Optional[torch.Generator]]:
    """One seeded generator per sampling row (None for greedy rows)."""
    gens = []
    for r in requests:
        if r.temperature > 0:
            seed = r.seed if r.seed is not None else random.SystemRandom().randrange(2**63)
            gens.append(torch.Generator(device=device).manual_seed(seed))
        else:
            gens.append(None)
    return gens


def choose_tokens(logits: torch.Tensor, temps: list[float], gens: list[Optional[torch.Generator]],
                  mask_id: int, confidence: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """logits [N, L, V] float32 -> (tokens [N, L], confidence [N, L] or None if not asked for).

    Greedy rows take the argmax, sampling rows the Gumbel-max sample of softmax(logits / T); the mask
    id is never chosen. Confidence is the full-softmax probability of the chosen token (as upstream).
    """
    scores = logits.clone()
    scores[..., mask_id] = float("-inf")
    for i, (t, g) in enumerate(zip(temps, gens)):
        if t > 0:
            u = torch.rand(scores.shape[1:], generator=g, device=scores.device).clamp_(1e-20, 1.0)
            scores[i] = scores[i] / t - torch.log(-torch.log(u))
    tokens = scores.argmax(dim=-1)
    if not confidence:   # skips a full-vocabulary softmax where the caller ignores it
        return tokens, None
    return tokens, torch.softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


class HostReader:
    """Reads small device tensors on the host without draining the GPU queue.

    `start(t)` queues a copy of t into one of two reused pinned buffers and returns a `PendingRead`
    whose `get()` waits for that copy alone, so forwards queued after it keep the GPU busy while the
    host waits and decides (the engines queue the next forward ahead of the decision). Reusing the
    buffers keeps page-locked allocations out of the loop; two of them let one copy be queued while
    the previous one is still being read.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.buffers: list[Optional[torch.Tensor]] = [None, None]
        self.turn = 0

    def start(self, t: torch.Tensor) -> "PendingRead":
        if not self.cuda:
            return PendingRead(t.clone(), None)
        n, buf = t.numel(), self.buffers[self.turn]
        if buf is None or buf.numel() < n or buf.dtype != t.dtype:
            buf = self.buffers[self.turn] = torch.empty(max(n, 1024), dtype=t.dtype, pin_memory=True)
        self.turn ^= 1
        view = buf[:n].view(t.shape)
        view.copy_(t, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return PendingRead(view, event)


@dataclass
class PendingRead:
    host: torch.Tensor
    event: Optional["torch.cuda.Event"]

    def get(self) -> list:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()


def prefill(model, cache, prompts: list[list[int]], pad_id: int) -> torch.Tensor:
    """Causal forward of right-padded prompts into a fresh cache; returns last-token logits [N, V]."""
    device = model.device
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = torch.tensor(p, dtype=torch.long)
    logits = model(ids.to(device), cache, "causal", kv_len=width, logits_at=lengths - 1, graph=False)
    cache.crop(lengths)  # padded slots beyond each prompt stay scratch
    return logits


@dataclass
class RowState:
    """What one request has produced so far."""

    request: GenerationRequest
    tokens: list[int] = field(default_factory=list)
    token_pass: list[int] = field(default_factory=list)
    nfe: int = 0
    acceptance: Optional[list[int]] = None
    finish: Optional[str] = None
    think_closed: bool = False
    seconds: float = 0.0

    def result(self) -> GenerationResult:
        return GenerationResult(tokens=list(self.tokens), nfe=self.nfe, finish_reason=self.finish or "length",
                                prefill_nfe=1, token_pass=list(self.token_pass),
                                acceptance_lengths=self.acceptance, seconds=self.seconds)


class Rows:
    """The running rows of a batch: request states, sampling settings and the cache, kept aligned."""

    def __init__(self, requests: list[GenerationRequest], bundle, cache, on_commit: Optional[CommitCallback],
                 row_ids: list[int]):
        self.states = [RowState(r) for r in requests]
        self.ids = list(row_ids)            # original batch index of each running row
        self.live = list(range(len(requests)))   # index into self.states of each running row
        self.temps = [r.temperature for r in requests]
        self.gens = make_generators(requests, bundle.model.device)
        self.cache = cache
        self.bundle = bundle
        self.on_commit = on_commit
        self.reader = HostReader(bundle.model.device)
        self.start = time.perf_counter()

    def __len__(self) -> int:
        return len(self.live)

    def state(self, j: int) -> RowState:
        return self.states[self.live[j]]

    def emit(self, j: int, tokens: list[int], passes: list[int]) -> None:
        """Append final tokens to running row j and notify the callback."""
        s = self.state(j)
        s.tokens.extend(tokens)
        s.token_pass.extend(passes)
        if self.bundle.end_think_token_id in tokens:
            s.think_closed = True
        if self.on_commit is not None and tokens:
            self.on_commit(self.ids[self.live[j]], list(tokens), passes[-1])

    def finish(self, j: int, reason: str) -> None:
        s = self.state(j)
        s.finish = reason
        s.seconds = time.perf_counter() - self.start

    def compact(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Drop finished rows from the batch, the cache and the given [N, ...] tensors."""
        keep = [j for j in range(len(self.live)) if self.state(j).finish is None]
        if len(keep) == len(self.live):
            return list(tensors)
        idx = torch.tensor(keep, dtype=torch.long, device=self.cache.lens.device)
        self.cache.keep_rows(idx)
        self.temps = [self.temps[j] for j in keep]
        self.gens = [self.gens[j] for j in keep]
        self.live = [self.live[j] for j in keep]
        return [t.index_select(0, idx) for t in tensors]

    def forced_think_index(self, j: int) -> Optional[int]:
        """Completion index where `</think>` must be forced for row j, or None."""
        s = self.state(j)
        budget = s.request.max_thinking_tokens
        if budget is None or s.think_closed or self.bundle.end_think_token_id is None:
            return None
        return budget
