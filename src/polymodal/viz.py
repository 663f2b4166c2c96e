"""Contact sheets and image grids that a person can read at a glance.

Tiny images (e.g. 32 px generated scenes, 8 px digits) are upscaled with NEAREST by an integer factor
so their pixels stay crisp; larger images are downscaled with LANCZOS.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (247, 247, 244)
INK = (30, 30, 30)
MUTED = (95, 95, 95)
FRAME = (200, 200, 196)
MARGIN = 12
GAP = 8
QUERY_COLUMN = 220
FONT_SIZE = 13
TITLE_SIZE = 17

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=8)
def _font(size: int) -> Font:
    """PIL's bundled scalable font (Pillow >= 10.1), or the bitmap default on older builds."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _line_height(font: Font) -> int:
    left, top, right, bottom = font.getbbox("Ag·")
    return int(bottom - top) + 4


def _truncate(text: str, font: Font, width: int) -> str:
    """Shorten ``text`` with an ellipsis so it fits in ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(text: str, font: Font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; overlong words are cut and the last line gets an ellipsis."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word if font.getlength(word) <= width else _truncate(word, font, width)
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _truncate(lines[-1] + " …", font, width)
    return lines


def fit_thumbnail(image: Image.Image, size: int) -> Image.Image:
    """Scale ``image`` to fit a ``size`` x ``size`` box, keeping aspect; small images stay pixel-crisp."""
    image = image.convert("RGB")
    w, h = image.size
    if w <= 0 or h <= 0:
        raise ValueError("cannot make a thumbnail of an empty image")
    if max(w, h) <= size:
        factor = max(1, size // max(w, h))  # integer factor: every source pixel becomes an equal block
        return image.resize((w * factor, h * factor), Image.Resampling.NEAREST)
    scale = size / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


def _paste_cell(canvas: Image.Image, image: Image.Image, label: str, x: int, y: int, thumb: int) -> None:
    """Framed thumbnail centred in a thumb x thumb box at (x, y), with a one-line label below."""
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([x - 1, y - 1, x + thumb, y + thumb], outline=FRAME, fill=(255, 255, 255))
    small = fit_thumbnail(image, thumb)
    canvas.paste(small, (x + (thumb - small.width) // 2, y + (thumb - small.height) // 2))
    if label:
        font = _font(FONT_SIZE)
        draw.text((x, y + thumb + 3), _truncate(label, font, thumb), font=font, fill=MUTED)


def _save_png(image: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write a PNG via a temporary file so a reader never sees half an image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _title_height(title: str | None) -> int:
    return _line_height(_font(TITLE_SIZE)) + GAP if title else 0


def _draw_title(canvas: Image.Image, title: str | None) -> None:
    if title:
        font = _font(TITLE_SIZE)
        text = _truncate(title, font, canvas.width - 2 * MARGIN)
        ImageDraw.Draw(canvas).text((MARGIN, MARGIN), text, font=font, fill=INK)


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[tuple[Image.Image, str]]]],
    path: str | os.PathLike[str] | None,
    thumb: int = 112,
    title: str | None = None,
) -> Image.Image:
    """One row per query: the wrapped query text, then its results as labelled thumbnails.

    Args:
        rows: ``[(query_text, [(image, label), ...]), ...]``; labels such as ``"0.83 · red circle"``.
        path: where to save the PNG (parent folders are created); None to only return the image.
        thumb: thumbnail box size in pixels.
        title: optional heading above the rows.

    Returns:
        The rendered RGB image (also saved to ``path``).
    """
    if not rows:
        raise ValueError("contact_sheet needs at least one (query, results) row")
    if thumb < 16:
        raise ValueError(f"thumb must be at least 16 pixels, got {thumb}")
    font = _font(FONT_SIZE)
    line = _line_height(font)
    cell_w, cell_h = thumb + GAP, thumb + line + GAP
    row_h = max(cell_h, 4 * line)
    max_results = max(len(results) for _, results in rows)
    width = 2 * MARGIN + QUERY_COLUMN + max(1, max_results) * cell_w
    top = MARGIN + _title_height(title)
    canvas = Image.new("RGB", (width, top + len(rows) * row_h + MARGIN - GAP), BACKGROUND)
    _draw_title(canvas, title)
    draw = ImageDraw.Draw(canvas)
    for r, (query, results) in enumerate(rows):
        y = top + r * row_h
        if r:
            draw.line([MARGIN, y - GAP // 2, width - MARGIN, y - GAP // 2], fill=FRAME)
        max_lines = max(1, (row_h - GAP) // line)
        for i, text in enumerate(_wrap(str(query), font, QUERY_COLUMN - GAP, max_lines)):
            draw.text((MARGIN, y + i * line), text, font=font, fill=INK)
        for c, (image, label) in enumerate(results):
            _paste_cell(canvas, image, str(label), MARGIN + QUERY_COLUMN + c * cell_w, y, thumb)
    if path is not None:
        _save_png(canvas, path)
    return canvas


def image_grid(
    images: Sequence[Image.Image],
    labels: Sequence[str] | None = None,
    cols: int = 8,
    thumb: int = 96,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Image.Image:
    """A gallery overview: ``images`` in a grid of ``cols`` columns, each with an optional label.

    Returns the RGB image, also saved as PNG when ``path`` is given.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images; pass one per image or None")
    if cols < 1 or thumb < 16:
        raise ValueError(f"cols must be >= 1 and thumb >= 16, got cols={cols}, thumb={thumb}")
    cols = min(cols, len(images))
    label_h = _line_height(_font(FONT_SIZE)) if labels is not None else 0
    cell_w, cell_h = thumb + GAP, thumb + label_h + GAP
    n_rows = -(-len(images) // cols)  # ceil division
    top = MARGIN + _title_height(title)
    width = max(2 * MARGIN + cols * cell_w - GAP, 2 * MARGIN + 160 if title else 0)
    canvas = Image.new("RGB", (width, top + n_rows * cell_h + MARGIN - GAP), BACKGROUND)
    _draw_title(canvas, title)
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        label = str(labels[i]) if labels is not None else ""
        _paste_cell(canvas, image, label, MARGIN + col * cell_w, top + row * cell_h, thumb)
    if path is not None:
        _save_png(canvas, path)
    return canvas
