"""Search over your own images: index a folder with a dual encoder, query it by text or by image."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from polymodal.index import EmbeddingIndex, Hit


def build_folder_index(
    pipeline, folder: str | Path, out: str | Path, kind: str = "flat", batch_size: int = 64
) -> str:
    """Embed every decodable image under ``folder`` and save an index at ``out``.

    Corrupt or non-image files are skipped and named in the returned report, never a crash.
    """
    from polymodal.data.folder import ImageFolder

    images = ImageFolder(folder, verify=False)  # each file is decoded once, below
    index = EmbeddingIndex(pipeline.embed_dim, kind=kind)
    index.model_name = pipeline.source
    decoded = images.decoded()
    while chunk := list(islice(decoded, batch_size)):
        items = [item for item, _ in chunk]
        index.add(
            pipeline.embed_image([image for _, image in chunk]),
            [{"path": str(item.path), "caption": item.caption} for item in items],
        )
    if len(index) == 0:
        return images.report() + "; nothing to index"
    index.save(out)
    return f"{images.report()}\nindex written to {out} ({len(index)} images, model {pipeline.source})"


def open_index(folder: str | Path) -> EmbeddingIndex:
    """Load an index folder written by :func:`build_folder_index` (or ``polymodal index``)."""
    return EmbeddingIndex.load(folder)


def search_index(pipeline, index: EmbeddingIndex, query, k: int = 5, by_image: bool = False) -> list[Hit]:
    """Top-``k`` hits for a text query (or an image path/PIL image with ``by_image``)."""
    if index.dim != pipeline.embed_dim:
        raise ValueError(
            f"index was built with model {index.model_name} (dim {index.dim}); model {pipeline.source} "
            f"embeds to dim {pipeline.embed_dim}; query with the index's model"
        )
    vector = pipeline.embed_image([query]) if by_image else pipeline.embed_text([query])
    return index.search(vector, k)[0]
