"""Limits enforced before any expensive work: body bytes (declared and counted), counts, text and tokens.

Image pixels and audio duration are read from file headers in :mod:`polymodal.serve.media`, before decoding.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polymodal.serve.errors import ServeError, error_response


class BodyTooLarge(ServeError):
    """The request body is larger than ``max_body_bytes``."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes", "body_too_large")


class BodySizeLimit:
    """ASGI middleware: refuse a body whose Content-Length is over the limit without reading it, and stop
    reading one that grows past the limit (chunked uploads, or a Content-Length that lies)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            message = BodyTooLarge(self.max_bytes).message if status == 413 else "invalid Content-Length"
            await error_response(status, message, "body_too_large" if status == 413 else None)(
                scope, receive, send
            )
            return
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as e:  # raised where no handler saw it (outside a route)
            if started:
                raise
            await error_response(413, e.message, e.code)(scope, receive, send)


def check_count(count: int, limit: int, what: str, param: str | None = None) -> None:
    """400 unless ``count`` is at most ``limit``."""
    if count > limit:
        raise ServeError(
            400, f"too many {what}: {count} given, at most {limit} per request", "too_many", param
        )


def check_text(text: str, limit: int, param: str) -> None:
    """400 when a text is longer than ``limit`` characters."""
    if len(text) > limit:
        raise ServeError(
            400, f"{param} is {len(text)} characters long; the limit is {limit}", "text_too_long", param
        )


def check_max_tokens(requested: int | None, limit: int, default: int = 64) -> int:
    """The number of new tokens to generate: ``requested`` (default ``min(default, limit)``), at most ``limit``."""
    if requested is None:
        return min(default, limit)
    if requested > limit:
        raise ServeError(
            400, f"max_tokens={requested} exceeds this server's limit of {limit}", "max_tokens", "max_tokens"
        )
    return requested
