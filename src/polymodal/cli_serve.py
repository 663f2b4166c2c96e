"""``polymodal serve``: one HTTP server for every loaded model (FastAPI and uvicorn imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polymodal.cli import app, fail


@app.command()
def serve(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model to serve (repeat): bundled name, folder or ALIAS=FOLDER."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of ServeConfig settings.")] = None,
    index: Annotated[Path | None, typer.Option(help="Index folder (polymodal index) for /v1/search.")] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            envvar="POLYMODAL_API_KEYS",
            help="Accepted Bearer key (repeat; or POLYMODAL_API_KEYS, comma-separated). None: open server.",
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="critical | error | warning | info | debug.")] = None,
) -> None:
    """Serve models over HTTP: OpenAI-compatible /v1 endpoints, classify, search, /metrics and /docs."""
    from polymodal.config import ConfigError
    from polymodal.serve.config import ServeConfig

    keys = [k.strip() for entry in api_key or [] for k in entry.split(",") if k.strip()] or None
    overrides = {
        "models": model or None,
        "host": host,
        "port": port,
        "index": str(index) if index else None,
        "api_keys": keys,
        "log_level": log_level,
    }
    try:
        settings = ServeConfig.from_json(config, **overrides) if config else _from_flags(overrides)
    except ConfigError as e:
        fail(str(e))
    _serve(settings)


def _from_flags(overrides: dict) -> object:
    from polymodal.config import from_dict
    from polymodal.serve.config import ServeConfig

    return from_dict(ServeConfig, {k: v for k, v in overrides.items() if v is not None}, where="options")


def _serve(settings) -> None:
    from polymodal.index import EmbeddingIndexError
    from polymodal.serve.server import run

    try:
        run(settings)
    except (FileNotFoundError, EmbeddingIndexError, ValueError) as e:  # bad model names, folders, index
        fail(str(e))
