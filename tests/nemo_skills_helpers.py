"""Test helpers for the eval client: a small real HTTP server (uvicorn on 127.0.0.1) used ONLY
for client-specific behaviour (resume, retries, error handling). It is not the model worker:
it answers each prompt with a fixed text chosen by the test (e.g. the gold answer in a box),
can fail the first N attempts of every prompt with 503, and counts requests per prompt."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

REPO = Path(__file__).resolve().parents[1]
RAW_DATA = REPO.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EchoGoldServer:
    """answer(user_text) -> reply text. fail_first: 503s before the first success per prompt."""

    def __init__(self, answer: Callable[[str], str], fail_first: int = 0, delay_s: float = 0.0,
                 reject: Optional[Callable[[str], bool]] = None, health: Optional[dict] = None):
        self.answer, self.fail_first, self.delay_s, self.reject = answer, fail_first, delay_s, reject
        self.health = health
        self.inflight = self.max_inflight = 0
        self.attempts: Counter = Counter()
        self.successes: Counter = Counter()
        self.bodies: list[dict] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = FastAPI()
        app.post("/v1/chat/completions")(self._chat)
        app.get("/health")(self._health)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _health(self):
        if self.health is None:
            return JSONResponse({"error": "no health here"}, status_code=404)
        return self.health

    async def _chat(self, request: Request):
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self._answer(request)
        finally:
            self.inflight -= 1

    async def _answer(self, request: Request):
        body = json.loads(await request.body())
        self.bodies.append(body)
        user = body["messages"][-1]["content"]
        self.attempts[user] += 1
        if self.attempts[user] <= self.fail_first:
            return JSONResponse({"error": {"message": "busy"}}, status_code=503)
        if self.reject and self.reject(user):
            return JSONResponse({"error": {"message": "prompt too long", "type": "invalid_request_error"}},
                                status_code=400)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = self.answer(user)
        self.successes[user] += 1
        tokens = max(1, len(text.split()))
        return {"id": "x", "object": "chat.completion", "model": body.get("model", ""),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1,
                          "nfe": (tokens + 1) // 2}}

    def __enter__(self) -> "EchoGoldServer":
        self._thread.start()
        deadline = time.time() + 20
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def gold_answer_by_prompt(rows: list[dict], prompt_name: str, make_text: Callable[[dict], str]) -> dict[str, str]:
    from xp.nemo_skills.prompts import build_messages

    return {build_messages(prompt_name, r)[-1]["content"]: make_text(r) for r in rows}


def prepare_all(data_dir: Path, names: tuple[str, ...] = ("gsm8k", "math-500", "aime24", "aime25", "human-eval",
                                                           "mbpp", "mmlu", "gpqa", "ifeval")) -> Path:
    """Prepare the real shared data with --from-raw, exactly as a user would."""
    from xp.nemo_skills.prepare_data import main

    assert main([*names, "--data-dir", str(data_dir), "--from-raw", str(RAW_DATA)]) == 0
    return data_dir


def write_outputs(bench_dir: Path, rows: list[dict], key: str = "generation", seed=None) -> Path:
    """An output file as the client would leave it (then graded by summarize)."""
    from xp.nemo_skills.results import output_name, write_jsonl_atomic

    path = bench_dir / output_name(seed)
    write_jsonl_atomic(path, rows)
    return path
