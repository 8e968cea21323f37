"""One chat-completion request to an OpenAI-compatible server, with retries, backoff and a
per-request timeout. The answer becomes a runner.Generation (text, tokens, NFE, timing)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Optional

import httpx

from xp.nemo_skills.runner import DecodingSettings, Generation

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class ServerUnavailable(RuntimeError):
    """Retries ran out on errors that are about the server, not the request."""


@dataclass(frozen=True)
class HttpSettings:
    server: str
    api_key: Optional[str] = None
    model: str = "nld"
    request_timeout: float = 3600.0
    max_retries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    @property
    def chat_url(self) -> str:
        base = self.server.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return base + "/chat/completions"


async def _health(client: httpx.AsyncClient, root: str, headers: dict) -> dict:
    resp = await client.get(root.rstrip("/") + "/health", headers=headers, timeout=10)
    body = resp.json()
    return body if isinstance(body, dict) else {}


async def discover_concurrency(client: httpx.AsyncClient, hs: HttpSettings) -> Optional[int]:
    """workers x batch size from /health: a worker reports `batch_size`; the balancer lists its
    workers, whose own /health give theirs. None when the server does not say."""
    headers = {"Authorization": f"Bearer {hs.api_key}"} if hs.api_key else {}
    root = hs.server.rstrip("/").removesuffix("/v1")
    try:
        body = await _health(client, root, headers)
        if isinstance(body.get("batch_size"), int):
            return body["batch_size"]
        total = 0
        for worker in body.get("workers") or []:
            if worker.get("healthy", True) and worker.get("address"):
                sub = await _health(client, f"http://{worker['address']}", headers)
                total += sub.get("batch_size", 1) if isinstance(sub.get("batch_size"), int) else 1
        return total or None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def request_body(messages: list[dict], seed: Optional[int], temperature: float, dec: DecodingSettings,
                 model: str) -> dict:
    body = {"model": model, "messages": messages, "temperature": temperature, "top_p": 0.95, "n": 1,
            "max_tokens": dec.max_tokens, "chat_template_kwargs": {"enable_thinking": dec.enable_thinking}}
    if seed is not None:
        body["seed"] = seed
    optional = {"block_length": dec.block_length, "threshold": dec.threshold,
                "max_thinking_tokens": dec.max_thinking_tokens}
    body.update({k: v for k, v in optional.items() if v is not None})
    if dec.linear_speculation:
        body["linear_speculation"] = True
    if dec.draft_lora_only:
        body["draft_lora_only"] = True
    return body


def _parse(data: dict, start: float) -> Generation:
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    return Generation(text=choice["message"].get("content") or "",
                      num_generated_tokens=int(usage.get("completion_tokens") or 0),
                      nfe=usage.get("nfe"), finish_reason=choice.get("finish_reason") or "",
                      start=start, end=time.time())


async def generate(client: httpx.AsyncClient, body: dict, hs: HttpSettings) -> Generation:
    """POST with retries on connection errors, timeouts and 408/429/5xx. Other 4xx answers are about
    this request: recorded as an empty generation with `error` (NeMo-Skills' soft-fail shape)."""
    headers = {"Authorization": f"Bearer {hs.api_key}"} if hs.api_key else {}
    last = ""
    for attempt in range(hs.max_retries + 1):
        if attempt:
            delay = min(hs.backoff_max_s, hs.backoff_s * 2 ** (attempt - 1))
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
        start = time.time()
        try:
            resp = await client.post(hs.chat_url, json=body, headers=headers, timeout=hs.request_timeout)
        except httpx.TransportError as exc:  # refused, reset, timed out
            last = f"{type(exc).__name__}: {exc}"
            continue
        if resp.status_code in RETRY_STATUS:
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            continue
        if resp.status_code >= 400:
            return Generation("", 0, 0, "error", start, time.time(), error=f"HTTP {resp.status_code}: {resp.text[:500]}")
        try:
            return _parse(resp.json(), start)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            last = f"malformed response ({exc})"
    raise ServerUnavailable(f"{hs.chat_url}: no answer after {hs.max_retries + 1} attempts ({last})")
