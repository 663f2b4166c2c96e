"""What the web page needs beyond the API: the search gallery's size and small thumbnails of its images.

``/v1/search`` answers with gallery ids and metadata; the page shows each hit as ``/v1/thumbnail?id=N``.
Only images listed in the server's index are ever read (by id, never by a path from the request), each
decoded under the same limits as an uploaded image, and their thumbnails are cached.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from polymodal.index import METADATA_FILE
from polymodal.serve.cache import LRUCache
from polymodal.serve.deps import get_state
from polymodal.serve.errors import ServeError
from polymodal.serve.media import decode_image
from polymodal.serve.state import ServeState

THUMBNAIL_CACHE = 512  # thumbnails kept in memory (a few KB each)
THUMBNAIL_QUALITY = 85  # JPEG quality of thumbnails

router = APIRouter(tags=["web page"])
State = Annotated[ServeState, Depends(get_state)]


@dataclass
class Gallery:
    """The images of one index folder, by id (line ``id`` of its ``metadata.jsonl``)."""

    folder: str
    items: list[dict[str, Any]]
    thumbnails: LRUCache = field(default_factory=lambda: LRUCache(THUMBNAIL_CACHE))

    @classmethod
    def open(cls, folder: str) -> Gallery:
        """Read the metadata of an index folder written by ``polymodal index``."""
        with open(Path(folder) / METADATA_FILE, encoding="utf-8") as f:
            return cls(folder, [json.loads(line) for line in f if line.strip()])

    def image_path(self, image_id: int) -> Path:
        """Where gallery image ``image_id`` lives (404 for an unknown id or an entry without a path)."""
        if not 0 <= image_id < len(self.items):
            raise ServeError(
                404,
                f"the gallery has no image {image_id} (ids are 0..{len(self.items) - 1})",
                "not_found",
                "id",
            )
        path = self.items[image_id].get("path")
        if not isinstance(path, str):
            raise ServeError(404, f"gallery image {image_id} has no file path", "not_found", "id")
        return Path(path)

    def thumbnail(self, image_id: int, size: int, max_pixels: int, max_bytes: int) -> bytes:
        """JPEG bytes of gallery image ``image_id`` fitted in ``size`` x ``size`` (blocking: file and
        decode); the image file is refused when larger than ``max_bytes`` or ``max_pixels``."""
        key = f"{image_id}:{size}"
        cached = self.thumbnails.get(key)
        if isinstance(cached, bytes):
            return cached
        path = self.image_path(image_id)
        if not path.is_file():
            raise ServeError(404, f"gallery image {image_id} is missing on disk", "not_found", "id")
        if path.stat().st_size > max_bytes:
            raise ServeError(
                413, f"gallery image {image_id} is larger than {max_bytes} bytes", "image_too_large"
            )
        image = decode_image(path.read_bytes(), max_pixels, "id")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
        data = buffer.getvalue()
        self.thumbnails.put(key, data)
        return data


async def get_gallery(request: Request, state: State) -> Gallery:
    """The gallery of the server's index, read once per app (404 when the server has no index)."""
    if state.index is None or not state.config.index:
        raise ServeError(404, "this server has no search index; start it with --index FOLDER", "no_index")
    gallery = getattr(request.app.state, "gallery", None)
    if gallery is None or gallery.folder != state.config.index:
        gallery = await asyncio.to_thread(Gallery.open, state.config.index)
        request.app.state.gallery = gallery
    return gallery


@router.get("/v1/gallery")
async def gallery_info(state: State, gallery: Annotated[Gallery, Depends(get_gallery)]) -> dict[str, Any]:
    """The search gallery: how many images it holds and the model that queries it."""
    return {"object": "gallery", "count": len(gallery.items), "model": state.index_model}


@router.get("/v1/thumbnail", response_class=Response)
async def thumbnail(
    state: State,
    gallery: Annotated[Gallery, Depends(get_gallery)],
    image_id: Annotated[int, Query(alias="id", ge=0, description="A gallery id from /v1/search.")],
    size: Annotated[int, Query(ge=16, le=512, description="Longest side in pixels.")] = 160,
) -> Response:
    """A small JPEG of one gallery image (what the web page shows for a search hit)."""
    config = state.config
    data = await asyncio.to_thread(
        gallery.thumbnail, image_id, size, config.max_pixels, config.max_body_bytes
    )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
