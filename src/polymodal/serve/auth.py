"""Optional API keys: ``Authorization: Bearer <key>``, checked before the body is read.

Every path needs a key except the probes, the metrics, the docs and the web page, so a route added later is
protected by default.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from polymodal.serve.errors import error_response

OPEN_PATHS = frozenset(
    {"/", "/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
OPEN_PREFIXES = ("/static/",)


def key_is_valid(token: str, keys: list[str]) -> bool:
    """Whether ``token`` equals one of ``keys``, comparing each in constant time (no early exit)."""
    candidate = token.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class ApiKeyAuth:
    """ASGI middleware answering 401 (in the error envelope) to requests without a valid key."""

    def __init__(self, app: ASGIApp, keys: list[str]):
        self.app, self.keys = app, list(keys)

    def _is_open(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        return scope.get("method") == "OPTIONS" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or self._is_open(scope):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers") or [])
        if token is None or not key_is_valid(token, self.keys):
            message = "missing API key" if token is None else "invalid API key"
            response = error_response(
                401,
                f"{message}: send 'Authorization: Bearer <key>'",
                "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def declare_bearer_auth(app: FastAPI) -> None:
    """Say in the OpenAPI schema that every path but the open ones needs a Bearer key, so that ``/docs``
    offers an Authorize button and client generators send the header."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "one of the server's API keys"}
            }
            for path, operations in schema.get("paths", {}).items():
                if path not in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
