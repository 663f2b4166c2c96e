"""Probes, metrics and the hook for the web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from polymodal.serve.deps import get_state
from polymodal.serve.errors import ServeError, error_response
from polymodal.serve.metrics import CONTENT_TYPE
from polymodal.serve.state import ServeState

STATIC_DIR = Path(__file__).parent / "static"  # the web page: index.html plus its assets, when present

router = APIRouter(tags=["system"])
State = Annotated[ServeState, Depends(get_state)]


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the process answers (liveness)."""
    return {"status": "ok"}


@router.get("/ready", response_model=None)
async def ready(state: State):
    """200 once every model is loaded and its workers run; 503 before that and while shutting down."""
    if not state.ready:
        return error_response(503, "the server is not ready", "not_ready")
    return {"status": "ready", "models": list(state.pipelines)}


@router.get("/metrics")
async def metrics(state: State) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(state.metrics.render(state.gauges()), media_type=CONTENT_TYPE)


def mount_web_page(app: FastAPI, folder: Path = STATIC_DIR) -> None:
    """Serve ``folder/index.html`` at ``/`` and the folder at ``/static`` when the page exists; until
    then ``GET /`` is a 404 in the error envelope."""
    index = folder / "index.html"
    if index.is_file():
        app.mount("/static", StaticFiles(directory=folder), name="static")

        @app.get("/", include_in_schema=False)
        async def page() -> Any:
            return FileResponse(index)

        return

    @app.get("/", include_in_schema=False)
    async def no_page() -> Any:
        raise ServeError(404, "no web page is installed; the API is under /v1 (see /docs)", "not_found")
