"""A short way to the busiest endpoint: ASGI middleware that hands ``POST /v1/embeddings`` straight to
its handler, past FastAPI's inner stack (exception middleware, exit stack, the routers' matching and
``APIRoute``'s request handler).

The route stays declared in FastAPI (it documents it in ``/docs``, and a request this middleware does not
take still reaches it there); only its handler is called from here. That handler takes the ``Request``
alone and returns a ``Response``, so FastAPI adds nothing to it but work: on a tiny-clip request of 8
texts, in-process, that work was a quarter of the event loop's time (``benchmarks/serve.py`` says what it
does to throughput). Errors take the app's own exception handlers, so the answers are the same envelopes.
This sits inside the API-key, body-size and metrics middleware, which apply as to every request.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


def route_path(scope: Scope) -> str:
    """The path routes match: without the ``root_path`` a proxy mounted the app under."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _takes_request_alone(route: APIRoute) -> bool:
    parameters = list(inspect.signature(route.endpoint).parameters.values())
    return len(parameters) == 1 and not route.dependencies


class HotRoutes:
    """Call the endpoints of ``routes`` directly for their paths and methods; pass everything else on."""

    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute], handlers: Mapping[Any, Handler]):
        """``handlers``: the app's exception handlers by exception class (read at each error, so handlers
        added later count); an exception with none (a bug) propagates to FastAPI's 500 handler."""
        self.app, self.handlers = app, handlers
        self.routes: dict[tuple[str, str], APIRoute] = {}
        for route in routes:
            if not _takes_request_alone(route):
                raise ValueError(f"{route.path}: a hot route's endpoint takes the Request alone")
            for method in route.methods:
                self.routes[(method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self.routes.get((scope.get("method", ""), route_path(scope))) if scope["type"] == "http" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # what routing would have set: the metrics label it by its template
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            if kind is Exception:  # the catch-all is FastAPI's server-error middleware's to run
                return None
            if kind in self.handlers:
                return self.handlers[kind]
        return None
