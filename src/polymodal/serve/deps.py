"""Small FastAPI dependencies shared by the routers."""

from __future__ import annotations

import email.message
import re
from typing import Any

from fastapi import Request

from polymodal.serve.errors import ServeError, param_path
from polymodal.serve.state import ServeState

SURROGATE = re.compile("[\ud800-\udfff]")


# dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread, a hand-off per
# request that took a tenth of the event loop's time per tiny-clip embeddings request (py-spy)


async def get_state(request: Request) -> ServeState:
    """The app's :class:`ServeState` (503 before the models are loaded)."""
    state = request.app.state.serve
    if state is None:
        raise ServeError(503, "the server is still loading its models", "not_ready")
    return state


def _content_type(request: Request) -> tuple[str, str] | None:
    declared = request.headers.get("content-type")
    if declared is None:
        return None
    message = email.message.Message()
    message["content-type"] = declared
    return message.get_content_maintype(), message.get_content_subtype()


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (FastAPI would otherwise report a confusing 422); 400 when
    it holds a lone UTF-16 surrogate escape, which JSON parsers accept but no UTF-8 text can hold."""
    kind = _content_type(request)
    if kind is None or kind[0] != "application" or not (kind[1] == "json" or kind[1].endswith("+json")):
        got = "no Content-Type" if kind is None else f"Content-Type {'/'.join(kind)}"
        raise ServeError(
            415,
            f"the body has {got}; send JSON with 'Content-Type: application/json'",
            "unsupported_media_type",
        )
    if await request.body():  # FastAPI already parsed it; request.json() returns that parse
        where = _lone_surrogate(await request.json())
        if where is not None:
            raise ServeError(
                400,
                f"{where or 'the body'} holds invalid Unicode (a lone surrogate)",
                "invalid_unicode",
                where or None,
            )


def _lone_surrogate(value: Any) -> str | None:
    """The path (``input[1]``) of the first string, key or value, holding a lone surrogate; "" for the
    body itself; None when there is none."""
    stack: list[tuple[list, Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and SURROGATE.search(item):
            return param_path(path) or ""
        if isinstance(item, dict):
            for key, child in item.items():
                if SURROGATE.search(key):
                    return param_path(path) or ""
                stack.append(([*path, key], child))
        elif isinstance(item, list):
            stack.extend(([*path, i], child) for i, child in enumerate(item))
    return None


async def require_multipart(request: Request) -> None:
    """415 unless the body is a multipart form (how files are uploaded)."""
    kind = _content_type(request)
    if kind != ("multipart", "form-data"):
        got = "no Content-Type" if kind is None else f"Content-Type {'/'.join(kind)}"
        raise ServeError(
            415, f"the body has {got}; upload the file as multipart/form-data", "unsupported_media_type"
        )
