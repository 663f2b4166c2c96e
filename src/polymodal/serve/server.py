"""Running the app with uvicorn: ``run(config)`` loads the models first (so a bad model name fails before
the port opens), then serves until interrupted."""

from __future__ import annotations

import logging

from polymodal.allocator import keep_freed_memory
from polymodal.serve.app import create_app
from polymodal.serve.config import ServeConfig
from polymodal.serve.state import load_pipelines


def run(config: ServeConfig) -> None:
    """Serve ``config`` in this process (blocking)."""
    import uvicorn

    config.validate()
    keep_freed_memory()  # each batch reuses the last one's pages (polymodal.allocator)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(config, load_pipelines(config))
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        limit_concurrency=config.max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
