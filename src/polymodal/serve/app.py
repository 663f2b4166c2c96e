"""The FastAPI application: routers, error envelope, middleware (metrics, API keys, body limit, the short
way to the busiest route) and a lifespan that loads the models (unless given) and starts and stops the
batch workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

import polymodal
from polymodal.pipelines.base import Pipeline
from polymodal.serve import routes_native, routes_openai, routes_page, routes_system
from polymodal.serve.auth import ApiKeyAuth, declare_bearer_auth
from polymodal.serve.config import ServeConfig
from polymodal.serve.errors import install_error_handlers
from polymodal.serve.hot import HotRoutes
from polymodal.serve.limits import BodySizeLimit
from polymodal.serve.metrics import Metrics, MetricsMiddleware
from polymodal.serve.state import ServeState, load_pipelines

log = logging.getLogger("polymodal.serve")

HOT_PATHS = ("/v1/embeddings",)  # handed to their endpoints past FastAPI's inner stack: see serve.hot


def create_app(config: ServeConfig | None = None, pipelines: dict[str, Pipeline] | None = None) -> FastAPI:
    """The server app for ``config``.

    Args:
        config: the settings (defaults: ``ServeConfig()``); validated here.
        pipelines: already loaded pipelines by served name; when None, ``config.models`` are loaded at
            startup (in a thread, before the first request is accepted).
    """
    config = config or ServeConfig()
    config.validate()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.serve is None:
            loaded = await asyncio.to_thread(load_pipelines, config)
            app.state.serve = ServeState(config, loaded, metrics)
        state: ServeState = app.state.serve
        state.start()
        log.info("serving %s", ", ".join(state.pipelines))
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="polymodal",
        version=polymodal.__version__,
        description="Embeddings, chat, transcription, zero-shot classification and search with polymodal models.",
        lifespan=lifespan,
    )
    # with preloaded pipelines the state (and a bad index path's error) exists before startup
    app.state.serve = ServeState(config, pipelines, metrics) if pipelines is not None else None
    install_error_handlers(app)
    for module in (routes_openai, routes_native, routes_page, routes_system):
        app.include_router(module.router)
    routes_system.mount_web_page(app)
    # the last added middleware runs first: count everything, check keys, the body size, then take the hot
    # routes straight to their endpoints
    hot = [r for r in routes_openai.router.routes if isinstance(r, APIRoute) and r.path in HOT_PATHS]
    app.add_middleware(HotRoutes, routes=hot, handlers=app.exception_handlers)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(ApiKeyAuth, keys=config.api_keys)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if config.api_keys:
        declare_bearer_auth(app)
    return app
