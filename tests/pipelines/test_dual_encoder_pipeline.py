import numpy as np
import pytest
from PIL import Image

from polymodal.data.images import ImageLoadError


def test_embeddings_are_normalised_float32(tiny_pipeline, tmp_path):
    img = Image.new("RGB", (50, 40), (200, 10, 10))
    img.save(tmp_path / "a.png")
    for out in (tiny_pipeline.embed_text(["a", "b c"]), tiny_pipeline.embed_image([img, tmp_path / "a.png"])):
        assert out.dtype == np.float32 and out.shape == (2, 32)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert tiny_pipeline.embed_text([]).shape == (0, 32)


def test_batching_does_not_change_results(tiny_pipeline):
    texts = [f"a red circle number {i}" for i in range(7)]
    np.testing.assert_allclose(
        tiny_pipeline.embed_text(texts, batch_size=3), tiny_pipeline.embed_text(texts), atol=1e-5
    )


def test_classify_returns_probabilities_per_label(tiny_pipeline):
    img = Image.new("RGB", (32, 32), (0, 0, 255))
    (probs,) = tiny_pipeline.classify([img], ["red", "green", "blue"])
    assert list(probs) == ["red", "green", "blue"]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="two distinct labels"):
        tiny_pipeline.classify([img], ["red", "red"])


def test_bad_inputs_raise_clear_errors(tiny_pipeline, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.png"):
        tiny_pipeline.embed_image([tmp_path / "notes.png"])
    with pytest.raises(TypeError, match="list of strings"):
        tiny_pipeline.embed_text("a single string")
    with pytest.raises(TypeError, match="list of images"):
        tiny_pipeline.embed_image(str(tmp_path / "notes.png"))
