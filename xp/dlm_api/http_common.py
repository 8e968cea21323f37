"""HTTP pieces shared by the worker and the balancer: the request guard (API key, body size
limit), the chat page, NeMo-Skills' readiness probe, and a uvicorn server that reports SIGTERM.
"""

from __future__ import annotations

import hmac
import logging
import signal
from pathlib import Path
from typing import Callable, Optional

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from xp.dlm_api.errors import error_bytes, error_response

CHAT_PAGE = Path(__file__).resolve().parent / "static" / "chat.html"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

class RequestGuard:
    """Pure ASGI middleware (cheap per request): Bearer key on /v1/*, and a body size limit.

    The body is read here in full, so an oversized upload is refused with a 413 before any route
    parses it; the route then gets the buffered bytes replayed.
    """

    def __init__(self, app, api_key: Optional[str], max_body_bytes: int):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.expected is not None and scope["path"].startswith("/v1"):
            given = _header(scope, b"authorization") or b""
            if not hmac.compare_digest(given, self.expected):
                return await _send_error(send, 401, "Invalid or missing API key: send the header "
                                         "'Authorization: Bearer <key>' with the key this server was started with.")
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _send_error(send, 413, self._too_large())
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await _send_error(send, 413, self._too_large())
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return (f"Request body too large: the limit is {self.max_body_bytes} bytes "
                "(server flag --max-body-bytes).")

def _header(scope, name: bytes) -> Optional[bytes]:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None

async def _send_error(send, status: int, message: str) -> None:
    body = error_bytes(message, status)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

def add_common_routes(app: FastAPI, is_ready: Callable[[], bool]) -> None:
    """GET / (chat page) and PUT / + PUT /v1 (NeMo-Skills' `curl -X PUT <server_address>` wait)."""

    @app.get("/", include_in_schema=False)
    async def chat_page():
        if not CHAT_PAGE.is_file():
            return error_response("The web chat page is not installed (xp/dlm_api/static/chat.html is "
                                  "missing); the API under /v1 works without it.", 404)
        return FileResponse(CHAT_PAGE, media_type="text/html")

    async def probe():
        ready = is_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    app.add_api_route("/", probe, methods=["PUT"], include_in_schema=False)
    app.add_api_route("/v1", probe, methods=["PUT"], include_in_schema=False)

class SignalAwareServer(uvicorn.Server):
    """uvicorn server that calls `on_exit_signal` as soon as SIGTERM/SIGINT arrives, so /health
    turns 503 while in-flight requests finish."""

    def __init__(self, config: uvicorn.Config, on_exit_signal: Callable[[], None]):
        super().__init__(config)
        self._on_exit_signal = on_exit_signal

    def handle_exit(self, sig, frame) -> None:
        self._on_exit_signal()
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutdown; SIGTERM is our normal stop, exit 0
        if hasattr(self, "_captured_signals"):
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

def serve(app, host: str, port: int, on_exit_signal: Callable[[], None],
          graceful_seconds: Optional[int] = 30) -> None:
    # long keep-alive: the balancer reuses its connections to the workers between requests
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=graceful_seconds, lifespan="on",
                            timeout_keep_alive=120)
    SignalAwareServer(config, on_exit_signal).run()

def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # one line per proxied request is noise
