import pytest
from PIL import Image

from polymodal.search import build_folder_index, open_index, search_index


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (250, 0, 0)).save(root / "red.png")
    Image.new("RGB", (40, 30), (0, 0, 250)).save(root / "sub" / "blue.jpg")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "captions.csv").write_text("file,caption\nred.png,a red square\n")
    return root


def test_index_skips_corrupt_files_and_searches(tiny_pipeline, folder, tmp_path):
    report = build_folder_index(tiny_pipeline, folder, tmp_path / "idx")
    assert "indexed 2 images, skipped 1: broken.png" in report
    index = open_index(tmp_path / "idx")
    hits = search_index(tiny_pipeline, index, "a red square", k=5)
    assert len(hits) == 2 and {h.metadata["path"].rsplit("/", 1)[-1] for h in hits} == {"red.png", "blue.jpg"}
    assert [h.metadata["caption"] for h in hits if h.metadata["path"].endswith("red.png")] == ["a red square"]
    by_image = search_index(tiny_pipeline, index, folder / "red.png", k=1, by_image=True)
    assert by_image[0].metadata["path"].endswith("red.png") and by_image[0].score == pytest.approx(
        1.0, abs=1e-4
    )


def test_missing_folder(tiny_pipeline, tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        build_folder_index(tiny_pipeline, tmp_path / "nope", tmp_path / "idx")
