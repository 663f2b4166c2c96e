"""One OpenAI-style error envelope for every failure: ``{"error": {"message", "type", "param", "code"}}``.

Expected failures carry a precise message; unexpected ones answer 500 with an error id to find the traceback
in the log, never the exception text. The log records status, type and route, never request payloads.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("polymodal.serve")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ServeError(HTTPException):
    """An error with its HTTP status and a message meant for the client.

    A subclass of Starlette's ``HTTPException`` so FastAPI re-raises it untouched even when it happens
    while the request body is being read (the body-size limit)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.message, self.code, self.param = message, code, param


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    """The JSON envelope of an error."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int, message: str, code: str | None = None, param: str | None = None, headers=None
) -> JSONResponse:
    """A JSON response holding the error envelope."""
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


def param_path(parts: list[str | int]) -> str | None:
    """``["messages", 0, "content"]`` -> ``"messages[0].content"``: how every error names a field."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def _validation_message(error: dict[str, Any]) -> tuple[str, str | None, str]:
    """A readable message, the dotted parameter (``body`` dropped from the path) and a code for one pydantic
    error."""
    param = param_path([part for part in error.get("loc", ()) if part != "body"])
    if error.get("type") == "extra_forbidden":
        return f"unsupported field {param!r}", param, "unsupported_field"
    if error.get("type") == "missing":
        if param is None:  # the body itself is missing
            return "the request body is empty: send a JSON object", None, "missing_body"
        return f"missing required field {param!r}", param, "missing_field"
    message = str(error.get("msg", "invalid value"))
    return (f"{param}: {message}" if param else message), param, "invalid_value"


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(400, f"the request body is not valid JSON ({reason})", "invalid_json")
    message, param, code = _validation_message(first)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return error_response(422, message, code, param)


async def _on_http(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    code = getattr(exc, "code", None)
    param = getattr(exc, "param", None)
    if exc.status_code >= 500:
        log.warning("%s %s -> %d", request.method, request.url.path, exc.status_code)
    return error_response(exc.status_code, message, code, param, getattr(exc, "headers", None))


async def _on_value_error(request: Request, exc: ValueError) -> JSONResponse:
    # pipelines and decoders raise ValueError (ImageLoadError, AudioError, ...) for input they cannot use;
    # their messages are written for users
    log.debug("%s %s -> 400 %s", request.method, request.url.path, type(exc).__name__)
    return error_response(400, str(exc) or type(exc).__name__, "invalid_input")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal server error (id {error_id}; see the server log)", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error raised by a request through the envelope."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(ValueError, _on_value_error)
    app.add_exception_handler(Exception, _on_unexpected)
