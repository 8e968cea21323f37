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
from typing import Optional

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from xp.dlm_api.errors import error_bytes, error_response, install_error_handlers
from xp.dlm_api.http_common import (DEFAULT_MAX_BODY_BYTES, RequestGuard, add_common_routes, serve,
                                    setup_logging)
from xp.dlm_api.pool import Watch, Worker, WorkerPool
from xp.dlm_api.upstream import Upstream, UpstreamError

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
    """Forwards POSTs on the raw ASGI level (no framework in the hot path)."""

    def __init__(self, pool: WorkerPool, upstream: Upstream, settings: BalancerSettings):
        self.pool = pool
        self.upstream = upstream
        self.settings = settings

    async def handle(self, path: str, body: bytes, headers: list[tuple[str, str]], send, receive) -> None:
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
                return await self._try(worker, path, body, headers, send, receive if stream else None)
            except WorkerFailed as exc:
                last_reason = f"{worker.address}: {exc}"
                if exc.mark_down:
                    self.pool.mark_down(worker, str(exc))
                log.warning("retrying request (attempt %d) after %s", attempt + 1, last_reason)
        message = (f"No worker could answer this request ({last_reason}); tried {len(tried)} worker(s), "
                   f"up to {self.settings.max_retries} retries.")
        await send_bytes(send, 503, error_bytes(message, 503))

    async def _try(self, worker: Worker, path: str, body: bytes, headers: list, send, receive) -> None:
        """One attempt on one worker. Raises WorkerFailed while nothing was sent to the client;
        a stream that fails after its start ends with an SSE error event instead. `receive` is
        given for streams only: a client that leaves ends the relay (and so the worker's job)."""
        stream = receive is not None
        watch = Watch(asyncio.current_task())
        worker.inflight.add(watch)
        timer = asyncio.get_running_loop().call_later(self.settings.request_timeout, watch.fire,
                                                      f"no answer within {self.settings.request_timeout:g} s")
        ok, started, conn, listener = False, False, None, None
        try:
            head, conn = await self.upstream.open(worker.address, "POST", path, headers, body)
            if head.status == 503:
                raise WorkerFailed("worker answered 503 (stopping or not ready)", mark_down=True)
            content_type = head.headers.get("content-type", "application/json")
            if not stream or head.status != 200:
                data, conn = await self.upstream.read_all(worker.address, conn), None
                watch.done = True
                await send_bytes(send, head.status, data, content_type)
                ok = True
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-cache")]})
            started = True
            listener = asyncio.ensure_future(_fire_on_disconnect(receive, watch))
            while (piece := await self.upstream.next_chunk(conn)) is not None:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            self.upstream.release(worker.address, conn, True)
            conn, watch.done = None, True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            ok = True
            return
        except asyncio.CancelledError:
            if watch.reason is None:
                raise
            _uncancel()
            if watch.reason == CLIENT_GONE:
                return
            failure = WorkerFailed(watch.reason, mark_down=False)
        except UpstreamError as exc:
            failure = WorkerFailed(str(exc), mark_down=exc.kind != "protocol")
        except WorkerFailed as exc:
            failure = exc
        finally:
            timer.cancel()
            if listener is not None:
                listener.cancel()
            worker.inflight.discard(watch)
            self.pool.release(worker, ok)
            if conn is not None:
                self.upstream.release(worker.address, conn, False)
        if not started:
            raise failure
        if failure.mark_down:
            self.pool.mark_down(worker, str(failure))
        message = f"The worker {worker.address} failed during this stream ({failure}); the answer is incomplete."
        await send({"type": "http.response.body", "more_body": False,
                    "body": b"data: " + error_bytes(message, 502) + b"\n\ndata: [DONE]\n\n"})


CLIENT_GONE = "the client disconnected"


async def _fire_on_disconnect(receive, watch: Watch) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    watch.fire(CLIENT_GONE)


def _uncancel() -> None:
    """Python >= 3.11 counts cancel requests; ours was handled, so take it back."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


async def send_bytes(send, status: int, body: bytes, content_type: str = "application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _wants_stream(body: bytes) -> bool:
    if b'"stream"' not in body:   # cheap pre-check: most requests do not stream
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("stream") is True


class ProxyRoutes:
    """ASGI layer: the proxied POST paths go straight to the Proxy, the rest to FastAPI."""

    PATHS = ("/v1/chat/completions", "/v1/completions")

    def __init__(self, app, proxy: Proxy, worker_api_key: Optional[str]):
        self.app = app
        self.proxy = proxy
        self.worker_auth = f"Bearer {worker_api_key}" if worker_api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.PATHS:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            return await send_bytes(send, 405, error_bytes("Method not allowed on this path: use POST.", 405))
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        await self.proxy.handle(scope["path"], b"".join(chunks), self._headers(scope), send, receive)

    def _headers(self, scope) -> list[tuple[str, str]]:
        headers = []
        for key, value in scope["headers"]:
            name = key.decode("latin-1")
            if name in FORWARDED_HEADERS and not (name == "authorization" and self.worker_auth):
                headers.append((name, value.decode("latin-1")))
        if self.worker_auth:
            headers.append(("authorization", self.worker_auth))
        return headers


def build_app(pool: WorkerPool, settings: BalancerSettings, api_key: Optional[str],
              max_body_bytes: int):
    upstream = Upstream(settings.connect_timeout)
    proxy = Proxy(pool, upstream, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await pool.poll_once(upstream, settings.health_timeout)
        poller = asyncio.create_task(pool.poll_forever(upstream, settings.health_interval,
                                                       settings.health_timeout))
        yield
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        upstream.close()

    app = FastAPI(title="nld-eval balancer", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)

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
    return RequestGuard(ProxyRoutes(app, proxy, settings.worker_api_key), api_key, max_body_bytes)


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
    for name in ("request_timeout", "health_interval", "health_timeout"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("retry_backoff", "no_worker_wait"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
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
