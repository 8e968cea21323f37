"""One error shape for every HTTP answer that is not a success, and one place that maps
exceptions to statuses (worker and balancer share it).

Body: {"error": {"message", "type", "param", "code"}} as OpenAI and vLLM send it, so clients
(openai, litellm inside NeMo-Skills) raise their usual typed errors.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("xp.dlm_api")

_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestTooLargeError",
    415: "UnsupportedMediaTypeError",
    422: "BadRequestError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


class APIError(Exception):
    """An error meant for the client: status, one-line message, offending parameter."""

    def __init__(self, message: str, status: int = 400, param: Optional[str] = None,
                 code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code


def error_body(message: str, status: int, param: Optional[str] = None,
               code: Optional[str] = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "APIError"),
                      "param": param, "code": code if code is not None else status}}


def error_response(message: str, status: int = 400, param: Optional[str] = None,
                   code: Optional[str] = None, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse(error_body(message, status, param, code), status_code=status,
                        headers=headers)


def error_bytes(message: str, status: int, param: Optional[str] = None) -> bytes:
    return json.dumps(error_body(message, status, param)).encode()


def describe_validation_errors(errors: list[dict]) -> tuple[str, Optional[str]]:
    """Turn pydantic's error list into one readable line and the first bad parameter."""
    parts, first_param = [], None
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        # pydantic puts the union/validator branch name in loc; drop the noise
        loc = [p for p in loc if not p.startswith("function-")]
        where = ".".join(loc) or "body"
        first_param = first_param or (loc[0] if loc else None)
        msg = str(err.get("msg", "invalid value"))
        parts.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "Invalid request: " + "; ".join(parts) + more, first_param


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the OpenAI shape; unexpected exceptions become a 500 without a trace."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return error_response(exc.message, exc.status, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        message, param = describe_validation_errors(list(exc.errors()))
        return error_response(message, 400, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        status = exc.status_code
        if status == 404:
            message = "Not found. Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health."
        elif status == 405:
            message = "Method not allowed on this path."
        else:
            message = str(exc.detail or HTTPStatus(status).phrase)
        return error_response(message, status, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unhandled error")
        return error_response(f"Internal error: {type(exc).__name__}. The server keeps serving; "
                              "see its log for details.", 500)
