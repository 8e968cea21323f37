"""The worker's request handling: parse, tokenize, queue into the batcher, shape the answer.

Routes in worker.py stay thin; everything between the HTTP body and the engine lives here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, replace
from typing import AsyncIterator

from fastapi.responses import JSONResponse, StreamingResponse

from xp.dlm_api import responses as shape
from xp.dlm_api.batcher import Batcher
from xp.dlm_api.errors import APIError, error_body
from xp.dlm_api.prompts import PromptBuilder, completion_budget
from xp.dlm_api.protocol import (ChatCompletionRequest, CompletionRequest, DecodingSettings,
                                 ServerDefaults, parse_body, thinking_flag, to_settings)
from xp.dlm_api.text import Detokenizer, StreamText, hidden_special_ids
from xp.dlm_generate import get_engine
from xp.dlm_generate.types import Engine, GenerationError, GenerationRequest, GenerationResult


class EngineSet:
    """Engines by requested name (`generation_algorithm`), built on first use from one model."""

    def __init__(self, bundle, default_name: str):
        self.bundle = bundle
        self._engines: dict[str, Engine] = {default_name: get_engine(default_name, bundle)}

    def get(self, name: str) -> Engine:
        if name not in self._engines:
            try:
                self._engines[name] = get_engine(name, self.bundle)
            except GenerationError as exc:
                raise APIError(str(exc), param="generation_algorithm") from None
        return self._engines[name]


@dataclass(frozen=True)
class Prepared:
    engine: Engine
    request: GenerationRequest
    detok: Detokenizer
    echo_text: str = ""


class WorkerService:
    def __init__(self, bundle, engines: EngineSet, batcher: Batcher, defaults: ServerDefaults,
                 served_model: str):
        self.bundle = bundle
        self.engines = engines
        self.batcher = batcher
        self.defaults = defaults
        self.served_model = served_model
        self.max_model_len = int(bundle.max_model_len)
        self.prompts = PromptBuilder(bundle.tokenizer, self.max_model_len,
                                     getattr(bundle.config, "vocab_size", None))
        self.eos_ids = frozenset([bundle.eos_token_id] if isinstance(bundle.eos_token_id, int)
                                 else bundle.eos_token_id or [])
        self.hidden_ids = hidden_special_ids(bundle.tokenizer)

    # ---- endpoints -------------------------------------------------------------------------
    async def chat(self, raw: bytes):
        req = parse_body(raw, ChatCompletionRequest)
        settings = to_settings(req, self.defaults)
        ids = self.prompts.chat(req.messages, thinking_flag(req, self.defaults),
                                req.add_generation_prompt is not False)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        job = self._prepare(ids, settings, rid)
        model = req.model or self.served_model
        if req.stream:
            return _sse_response(self._stream("chat", rid, model, job, req.include_usage_chunk()))
        return JSONResponse(shape.answer("chat", rid, model, [await self._run(job)]))

    async def completion(self, raw: bytes):
        req = parse_body(raw, CompletionRequest)
        settings = to_settings(req, self.defaults)
        rid = f"cmpl-{uuid.uuid4().hex}"
        prompts = req.prompts()
        if req.stream and len(prompts) > 1:
            raise APIError("Streaming supports one prompt per request; send the prompts separately.",
                           param="prompt")
        jobs = []
        for i, prompt in enumerate(prompts):
            ids = self.prompts.completion(prompt, bool(req.add_special_tokens))
            echo = (prompt if isinstance(prompt, str) else self.prompts.tokenizer.decode(ids)) if req.echo else ""
            jobs.append(self._prepare(ids, settings, rid if len(prompts) == 1 else f"{rid}-{i}", echo))
        model = req.model or self.served_model
        if req.stream:
            return _sse_response(self._stream("text", rid, model, jobs[0], req.include_usage_chunk()))
        choices = await asyncio.gather(*(self._run(j) for j in jobs))
        return JSONResponse(shape.answer("text", rid, model, list(choices)))

    def models(self) -> dict:
        return {"object": "list", "data": [{
            "id": self.served_model, "object": "model", "created": int(time.time()),
            "owned_by": "nld-eval", "max_model_len": self.max_model_len}]}

    # ---- internals -------------------------------------------------------------------------
    def _prepare(self, ids: tuple[int, ...], s: DecodingSettings, rid: str, echo: str = "") -> Prepared:
        engine = self.engines.get(s.engine)
        use_lora = s.use_draft_lora
        if use_lora is None:   # as evaluate.py: a loaded adapter drafts for linear speculation
            use_lora = self.defaults.draft_lora_only or (self.bundle.has_lora and s.linear_speculation)
        if use_lora and not self.bundle.has_lora:
            raise APIError("draft_lora_only needs a LoRA adapter, and this worker has none: start it "
                           "with --lora-path DIR or send draft_lora_only=false.", param="draft_lora_only")
        request = GenerationRequest(
            prompt_ids=ids,
            max_new_tokens=completion_budget(len(ids), s.max_tokens, self.defaults.max_tokens,
                                             self.max_model_len),
            block_length=s.block_length, threshold=s.threshold, temperature=s.temperature,
            seed=s.seed, linear_speculation=s.linear_speculation, use_draft_lora=use_lora,
            max_thinking_tokens=s.max_thinking_tokens, eos_early_stop=s.eos_early_stop,
            steps=s.steps, request_id=rid)
        detok = Detokenizer(self.bundle.tokenizer, self.eos_ids, s.stops,
                            self.hidden_ids if s.skip_special_tokens else frozenset())
        return Prepared(engine, request, detok, echo)

    async def _run(self, job: Prepared) -> shape.Choice:
        result = _clip(await self.batcher.submit(job.engine, job.request), job.request.max_new_tokens)
        view = job.detok.final(result.tokens)
        finish = "stop" if view.stopped else result.finish_reason
        return shape.Choice(job.echo_text + view.text, finish, len(job.request.prompt_ids), result)

    async def _stream(self, kind: shape.Kind, rid: str, model: str, job: Prepared,
                      include_usage: bool) -> AsyncIterator[bytes]:
        events: asyncio.Queue = asyncio.Queue()
        task = asyncio.ensure_future(self.batcher.submit(
            job.engine, job.request, lambda toks, p: events.put_nowait((toks, p))))
        task.add_done_callback(lambda _: events.put_nowait(None))
        created, text = int(time.time()), StreamText(job.detok)
        budget = [job.request.max_new_tokens]   # tokens the client may still get
        speculative = job.request.linear_speculation
        try:
            yield shape.sse(shape.chunk(kind, rid, model, created, job.echo_text, first=True))
            done = False
            while not done:
                batch = [await events.get()]
                while not events.empty():
                    batch.append(events.get_nowait())
                done = batch[-1] is None
                commits = _within(budget, [e for e in batch if e is not None])
                if commits and not text.stopped:
                    passes = [p for toks, p in commits for _ in toks]
                    delta = text.add([t for toks, _ in commits for t in toks])
                    nld = {"pass": passes, "nfe": commits[-1][1] + 1,
                           "acceptance_lengths": [len(t) for t, _ in commits] if speculative else None}
                    yield shape.sse(shape.chunk(kind, rid, model, created, delta, nld=nld))
            result = _clip(task.result(), job.request.max_new_tokens)
            delta, stopped = text.finish(result.tokens)
            final = shape.chunk(kind, rid, model, created, delta,
                                finish_reason="stop" if stopped else result.finish_reason,
                                nld={"pass": [], "nfe": result.nfe,
                                     "acceptance_lengths": result.acceptance_lengths,
                                     "token_pass": result.token_pass,
                                     # text of each token, aligned with token_pass (chat page pass view)
                                     "token_text": job.detok.pieces(result.tokens)})
            final["usage"] = shape.usage(len(job.request.prompt_ids), [result])
            yield shape.sse(final)
            if include_usage:
                yield shape.sse(shape.usage_chunk(kind, rid, model, created, final["usage"]))
        except APIError as exc:   # after the 200 went out, an error travels as an SSE event
            yield shape.sse(error_body(exc.message, exc.status, exc.param))
        finally:
            if not task.done():
                task.cancel()   # client left: drop the job unless the engine already has it
        yield shape.SSE_DONE


def _clip(result: GenerationResult, limit: int) -> GenerationResult:
    """Diffusion decodes whole blocks (at least one), so it can overshoot a max_tokens below the
    block length; the client never gets more than it asked for."""
    if len(result.tokens) <= limit:
        return result
    return replace(result, tokens=result.tokens[:limit], token_pass=result.token_pass[:limit],
                   finish_reason="length")


def _within(budget: list[int], commits: list[tuple[list[int], int]]) -> list[tuple[list[int], int]]:
    """The stream's share of `_clip`: drop committed tokens past the budget."""
    kept = []
    for tokens, pass_index in commits:
        tokens = tokens[:budget[0]]
        budget[0] -= len(tokens)
        if tokens:
            kept.append((tokens, pass_index))
    return kept


def _sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

