"""HTTP serving: one FastAPI app for every loaded model (OpenAI-compatible and native endpoints).

``create_app(config, pipelines)`` builds the app; ``run(config)`` serves it with uvicorn (``polymodal
serve``). Imports FastAPI lazily, so ``import polymodal.serve`` costs nothing until used.
"""

from __future__ import annotations

from typing import Any

from polymodal.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app", "run"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from polymodal.serve.app import create_app

        return create_app
    if name == "run":
        from polymodal.serve.server import run

        return run
    raise AttributeError(f"module 'polymodal.serve' has no attribute {name!r}")
