"""Small FastAPI dependencies shared by the routers."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from polymodal.serve.errors import ServeError, param_path
from polymodal.serve.state import ServeState

SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a JSON escape of a UTF-16 surrogate
Model = TypeVar("Model", bound=BaseModel)


# dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread, a hand-off per
# request that took a tenth of the event loop's time per tiny-clip embeddings request (py-spy)


async def get_state(request: Request) -> ServeState:
    """The app's :class:`ServeState` (503 before the models are loaded)."""
    state = request.app.state.serve
    if state is None:
        raise ServeError(503, "the server is still loading its models", "not_ready")
    return state


def _content_type(request: Request) -> tuple[str, str] | None:
    """(type, subtype) of the declared media type, lower case, parameters (``; charset=...``) dropped."""
    declared = request.headers.get("content-type")
    if declared is None:
        return None
    kind, _, subtype = declared.split(";", 1)[0].strip().lower().partition("/")
    return kind, subtype.strip()


def _declared(kind: tuple[str, str] | None) -> str:
    """How an error message names what the request declared."""
    return "no Content-Type" if kind is None else "Content-Type " + "/".join(part for part in kind if part)


def _require_json_type(request: Request) -> None:
    """415 unless the body is declared as JSON (FastAPI would otherwise report a confusing 422)."""
    kind = _content_type(request)
    if kind is None or kind[0] != "application" or not (kind[1] == "json" or kind[1].endswith("+json")):
        got = _declared(kind)
        raise ServeError(
            415,
            f"the body has {got}; send JSON with 'Content-Type: application/json'",
            "unsupported_media_type",
        )


def _refuse_lone_surrogate(parsed: Any) -> None:
    """400 when the parsed body holds a lone UTF-16 surrogate escape, which JSON parsers may accept but no
    UTF-8 text can hold."""
    where = _lone_surrogate(parsed)
    if where is not None:
        raise ServeError(
            400,
            f"{where or 'the body'} holds invalid Unicode (a lone surrogate)",
            "invalid_unicode",
            where or None,
        )


async def require_json(request: Request) -> None:
    """For routes whose body FastAPI parses: 415 unless it is declared as JSON; 400 when it holds a lone
    surrogate."""
    _require_json_type(request)
    if await request.body():  # FastAPI already parsed it; request.json() returns that parse
        _refuse_lone_surrogate(await request.json())


async def json_body(request: Request, model: type[Model]) -> Model:
    """The body validated as ``model`` in one pydantic call on the raw bytes, with the errors a body
    parameter gets (415, 400 for bad JSON or a lone surrogate, 422 naming the field).

    For the hot routes (embeddings): FastAPI's body parameter parses with ``json.loads``, validates the
    objects and re-serialises the response through ``jsonable_encoder``, which with the dependencies was
    most of the event loop's work on a tiny-clip request."""
    _require_json_type(request)
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid" and SURROGATE_ESCAPE.search(raw):
            _refuse_lone_surrogate(_loads_or_none(raw))  # pydantic refuses lone ones: say why
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


def json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads its body with :func:`json_body` (FastAPI sees no
    body parameter to document)."""
    schema = {"schema": model.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": schema}}}


def _loads_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


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
        got = _declared(kind)
        raise ServeError(
            415, f"the body has {got}; upload the file as multipart/form-data", "unsupported_media_type"
        )
