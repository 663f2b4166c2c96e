import io
import json

import numpy as np
import pytest
from PIL import Image

from polymodal.data.folder import ImageFolder


def write_png(path, color=(255, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), color).save(path)


def truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def test_indexes_recursively_skips_and_reports_corrupt_files(tmp_path):
    write_png(tmp_path / "good.png")
    write_png(tmp_path / "nested" / "deeper" / "blue.png", (0, 0, 255))
    (tmp_path / "a.jpg").write_text("not really a jpeg")
    (tmp_path / "b.png").write_bytes(truncated_png())
    (tmp_path / "notes.txt").write_text("ignored: not an image extension")
    (tmp_path / "captions.csv").write_text("file,caption\ngood.png,a red card\nnested/deeper/blue.png,blue\n")
    folder = ImageFolder(tmp_path)
    assert [item.path.name for item in folder.items] == ["good.png", "blue.png"]
    assert [item.caption for item in folder.items] == ["a red card", "blue"]
    assert folder.skipped == [("a.jpg", "cannot identify image file"), ("b.png", "truncated")]
    assert (
        folder.report()
        == "indexed 2 images, skipped 2: a.jpg (cannot identify image file), b.png (truncated)"
    )
    assert folder.load(1).getpixel((0, 0)) == (0, 0, 255)


def test_jsonl_captions_with_alternative_keys_and_missing_entries(tmp_path):
    write_png(tmp_path / "x.png")
    write_png(tmp_path / "y.png")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "x.png", "text": "an x"}) + "\n\n")
    folder = ImageFolder(tmp_path)
    assert [(i.path.name, i.caption) for i in folder.items] == [("x.png", "an x"), ("y.png", None)]
    assert folder.report() == "indexed 2 images"


def test_captions_argument_and_errors(tmp_path):
    write_png(tmp_path / "x.png")
    assert ImageFolder(tmp_path, captions={"x.png": "given"})[0].caption == "given"
    (tmp_path / "bad.csv").write_text("name,words\nx.png,hi\n")
    with pytest.raises(ValueError, match="file, image, path"):
        ImageFolder(tmp_path, captions=tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolder(tmp_path / "missing")


def test_unverified_folder_decodes_each_file_once_while_iterating(tmp_path):
    from PIL import Image

    from polymodal.data.folder import ImageFolder

    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    folder = ImageFolder(tmp_path, verify=False)
    assert folder.items == [] and folder.skipped == []  # nothing decoded yet
    decoded = list(folder.decoded())
    assert [item.path.name for item, _ in decoded] == ["a.png"] and decoded[0][1].size == (8, 8)
    assert [i.path.name for i in folder.items] == ["a.png"] and [n for n, _ in folder.skipped] == ["b.png"]
    assert list(folder.decoded()) == []  # a second pass has nothing left to decode
