"""Load balancer in front of the workers (same OpenAI-compatible API).

    python -m xp.dlm_api.balancer --workers host:port,host:port --port P

Each request goes to the healthy worker with the fewest outstanding requests. When that worker
refuses the connection, drops the request (it died), answers 503 (it is stopping), times out, or is
marked down by the health poller while the request waits, the request is retried on another
worker, at most --max-retries times, with exponential backoff. Worker 4xx/5xx answers are passed
through unchanged: they are about the request, not the worker. Streams pass through byte for byte;
a stream cut after its first bytes ends with an SSE error event, because text already sent cannot
be taken back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Optional

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from xp.dlm_api.errors import error_body, error_response, install_error_handlers
from xp.dlm_api.http_common import (DEFAULT_MAX_BODY_BYTES, RequestGuard, add_common_routes, serve,
                                    setup_logging)
from xp.dlm_api.pool import Worker, WorkerPool

log = logging.getLogger("xp.dlm_api.balancer")

FORWARDED_HEADERS = ("content-type", "authorization", "x-request-id")


@dataclass(frozen=True)
class BalancerSettings:
    max_retries: int = 3
    backoff_seconds: float = 0.05
    request_timeout: float = 14400.0
    connect_timeout: float = 5.0
    health_interval: float = 1.0
    health_timeout: float = 5.0
    no_worker_wait: float = 30.0     # how long a request waits for some worker to be healthy
    worker_api_key: Optional[str] = None


class WorkerFailed(Exception):
    """The worker, not the request, is at fault: try another one."""

    def __init__(self, reason: str, mark_down: bool):
        super().__init__(reason)
        self.mark_down = mark_down


class Proxy:
    def __init__(self, pool: WorkerPool, client: httpx.AsyncClient, settings: BalancerSettings):
        self.pool = pool
        self.client = client
        self.settings = settings

    async def forward(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        stream = _wants_stream(body)
        tried: set[Worker] = set()
        last_reason = "no worker was healthy"
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.settings.backoff_seconds * 2 ** (attempt - 1))
            worker = await self.pool.acquire(tried, self.settings.no_worker_wait)
            if worker is None:
                break
            tried.add(worker)
            try:
                if stream:
                    return await self._open_stream(worker, path, body, headers)
                return await self._exchange(worker, path, body, headers)
            except WorkerFailed as exc:
                last_reason = f"{worker.address}: {exc}"
                if exc.mark_down:
                    self.pool.mark_down(worker, str(exc))
                log.warning("retrying request (attempt %d) after %s", attempt + 1, last_reason)
        return error_response(f"No worker could answer this request ({last_reason}); "
                              f"retried {self.settings.max_retries} times.", 503)

    async def _exchange(self, worker: Worker, path: str, body: bytes, headers: dict) -> Response:
        ok = False
        try:
            response = await _unless_down(worker, self.client.post(worker.url + path, content=body,
                                                                   headers=headers))
            _raise_if_unavailable(response)
            ok = True
            return Response(response.content, status_code=response.status_code,
                            media_type=response.headers.get("content-type"))
        except httpx.HTTPError as exc:
            raise _classify(exc) from None
        finally:
            self.pool.release(worker, ok)

    async def _open_stream(self, worker: Worker, path: str, body: bytes, headers: dict) -> Response:
        request = self.client.build_request("POST", worker.url + path, content=body, headers=headers)
        try:
            upstream = await _unless_down(worker, self.client.send(request, stream=True))
        except (httpx.HTTPError, WorkerFailed) as exc:
            self.pool.release(worker, False)
            raise _classify(exc) if isinstance(exc, httpx.HTTPError) else exc from None
        if upstream.status_code != 200:
            try:
                content = await upstream.aread()
            finally:
                await upstream.aclose()
                self.pool.release(worker, False)
            _raise_if_unavailable(upstream)
            return Response(content, status_code=upstream.status_code,
                            media_type=upstream.headers.get("content-type"))
        return StreamingResponse(self._relay(worker, upstream), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _relay(self, worker: Worker, upstream: httpx.Response) -> AsyncIterator[bytes]:
        ok = False
        try:
            async for piece in upstream.aiter_raw():
                yield piece
            ok = True
        except httpx.HTTPError as exc:
            self.pool.mark_down(worker, f"stream cut: {type(exc).__name__}")
            message = f"The worker {worker.address} failed during this stream; the answer is incomplete."
            yield b"data: " + json.dumps(error_body(message, 502)).encode() + b"\n\ndata: [DONE]\n\n"
        finally:
            await upstream.aclose()
            self.pool.release(worker, ok)


async def _unless_down(worker: Worker, call):
    """Await `call`, but give up as soon as the worker is marked down."""
    task = asyncio.ensure_future(call)
    if worker.down.is_set():
        task.cancel()
        raise WorkerFailed("worker is marked down", mark_down=False)
    down = asyncio.ensure_future(worker.down.wait())
    try:
        await asyncio.wait({task, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        down.cancel()
    if not task.done():
        task.cancel()
        raise WorkerFailed("worker was marked down while the request waited", mark_down=False)
    return task.result()


def _raise_if_unavailable(response: httpx.Response) -> None:
    if response.status_code == 503:
        raise WorkerFailed("worker answered 503 (stopping or not ready)", mark_down=True)


def _classify(exc: httpx.HTTPError) -> WorkerFailed:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return WorkerFailed(f"timed out ({type(exc).__name__})", mark_down=False)
    return WorkerFailed(f"{type(exc).__name__}: {exc or 'connection failed'}", mark_down=True)


def _wants_stream(body: bytes) -> bool:
    if b'"stream"' not in body:   # cheap pre-check: most requests do not stream
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("stream") is True


def build_app(pool: WorkerPool, settings: BalancerSettings, api_key: Optional[str],
              max_body_bytes: int):
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        timeout = httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=1024)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            state["proxy"] = Proxy(pool, client, settings)
            await pool.poll_once(client, settings.health_timeout)
            poller = asyncio.create_task(pool.poll_forever(client, settings.health_interval,
                                                           settings.health_timeout))
            yield
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)

    app = FastAPI(title="nld-eval balancer", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)

    def headers_of(request: Request) -> dict[str, str]:
        headers = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k)) is not None}
        if settings.worker_api_key:
            headers["authorization"] = f"Bearer {settings.worker_api_key}"
        return headers

    async def forward(request: Request):
        return await state["proxy"].forward(request.url.path, await request.body(), headers_of(request))

    app.add_api_route("/v1/chat/completions", forward, methods=["POST"])
    app.add_api_route("/v1/completions", forward, methods=["POST"])

    @app.get("/v1/models")
    async def models():
        if pool.models_body is None:
            return error_response("No worker has answered yet, so the model list is unknown; retry "
                                  "once /health is 200.", 503)
        return pool.models_body

    @app.get("/health")
    async def health():
        healthy = len(pool.healthy())
        body = {"status": "ok" if healthy else "unavailable", "healthy_workers": healthy,
                "workers": [w.snapshot() for w in pool.workers]}
        return JSONResponse(body, status_code=200 if healthy else 503)

    add_common_routes(app, lambda: bool(pool.healthy()))
    return RequestGuard(app, api_key, max_body_bytes)


def parse_workers(text: str) -> list[str]:
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if not addresses:
        raise argparse.ArgumentTypeError("give at least one worker as host:port")
    for a in addresses:
        host, _, port = a.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(f"worker address '{a}' is not host:port (e.g. 127.0.0.1:8001)")
    if len(set(addresses)) != len(addresses):
        raise argparse.ArgumentTypeError("a worker address is listed twice")
    return addresses


def parse_args(argv=None) -> argparse.Namespace:
    d = BalancerSettings()
    p = argparse.ArgumentParser(prog="python -m xp.dlm_api.balancer",
                                description="Spread OpenAI-compatible requests over workers.")
    p.add_argument("--workers", required=True, type=parse_workers, help="host:port,host:port,...")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/*")
    p.add_argument("--worker-api-key", default=None,
                   help="key to send to the workers (default: forward the client's Authorization header)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument("--max-retries", type=int, default=d.max_retries, help="retries on other workers")
    p.add_argument("--retry-backoff", type=float, default=d.backoff_seconds, help="first backoff (s), doubles")
    p.add_argument("--request-timeout", type=float, default=d.request_timeout, help="per worker try (s)")
    p.add_argument("--health-interval", type=float, default=d.health_interval, help="seconds between polls")
    p.add_argument("--health-timeout", type=float, default=d.health_timeout)
    p.add_argument("--no-worker-wait", type=float, default=d.no_worker_wait,
                   help="how long a request waits for a healthy worker before a 503 (s)")
    args = p.parse_args(argv)
    if args.max_retries < 0:
        p.error("--max-retries must be >= 0")
    for name in ("retry_backoff", "request_timeout", "health_interval", "health_timeout", "no_worker_wait"):
        if getattr(args, name) < 0 or (name != "no_worker_wait" and getattr(args, name) == 0
                                       and name != "retry_backoff"):
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be 0..65535, got {args.port}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    settings = BalancerSettings(max_retries=args.max_retries, backoff_seconds=args.retry_backoff,
                                request_timeout=args.request_timeout, health_interval=args.health_interval,
                                health_timeout=args.health_timeout, no_worker_wait=args.no_worker_wait,
                                worker_api_key=args.worker_api_key)
    headers = {"authorization": f"Bearer {args.worker_api_key}"} if args.worker_api_key else {}
    pool = WorkerPool(args.workers, headers)
    app = build_app(pool, settings, args.api_key, args.max_body_bytes)
    log.info("balancer on http://%s:%d over %s", args.host, args.port, ",".join(args.workers))
    serve(app, args.host, args.port, on_exit_signal=lambda: None, graceful_seconds=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
