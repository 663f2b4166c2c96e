"""Contact sheets and image grids: sizes, saved PNGs, crisp upscaling and input errors."""

import numpy as np
import pytest
from PIL import Image

from polymodal.viz import GAP, MARGIN, QUERY_COLUMN, contact_sheet, fit_thumbnail, image_grid


def solid(color, size=(32, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_contact_sheet_writes_png_of_expected_size(tmp_path):
    rows = [
        ("a red circle", [(solid("red"), "0.83 · red circle"), (solid("blue"), "0.41 · blue square")]),
        ("a green square and a much longer query that needs wrapping", [(solid("green"), "0.90 · green")]),
    ]
    path = tmp_path / "sheets" / "search.png"
    image = contact_sheet(rows, path, thumb=64, title="search")
    assert path.is_file()
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == image.size
    assert image.width == 2 * MARGIN + QUERY_COLUMN + 2 * (64 + GAP)
    assert image.height > 2 * 64
    # the first result column shows red (row 1) above green (row 2), colours unchanged
    column = [image.getpixel((MARGIN + QUERY_COLUMN + 32, y)) for y in range(image.height)]
    assert column.index((255, 0, 0)) < column.index((0, 128, 0))
    assert not list(tmp_path.glob("sheets/.*"))  # no temp file left behind


def test_contact_sheet_without_path_only_returns_image():
    image = contact_sheet([("q", [(solid("white"), "x")])], path=None, thumb=32)
    assert image.mode == "RGB"


def test_tiny_images_are_upscaled_crisply_by_an_integer_factor():
    checker = Image.fromarray((np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8))
    thumb = fit_thumbnail(checker, 64)
    assert thumb.size == (64, 64)
    assert set(np.unique(np.asarray(thumb))) == {0, 255}  # NEAREST: no blended grey pixels
    assert fit_thumbnail(solid("red", (400, 200)), 100).size == (100, 50)  # big images shrink, keep aspect


def test_image_grid_layout_and_errors(tmp_path):
    images = [solid((i * 20, 0, 0), (8, 8)) for i in range(10)]
    grid = image_grid(images, [f"#{i}" for i in range(10)], cols=4, thumb=48, path=tmp_path / "g.png")
    assert grid.width == 2 * MARGIN + 4 * (48 + GAP) - GAP
    assert (tmp_path / "g.png").is_file()
    with pytest.raises(ValueError, match="2 labels for 10 images"):
        image_grid(images, ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([], None)
