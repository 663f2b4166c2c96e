import io

import numpy as np
import pytest
import torch
from PIL import Image

from polymodal.config import from_dict
from polymodal.data.images import ImageLoadError, ImageProcessor, ImageProcessorConfig, load_image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_load_image_accepts_paths_bytes_pil_and_arrays(tmp_path):
    red = Image.new("RGB", (6, 4), (255, 0, 0))
    red.save(tmp_path / "red.png")
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    sources = [tmp_path / "red.png", str(tmp_path / "red.png"), png_bytes(red), red.convert("P"), rgba]
    for src in sources:
        image = load_image(src)
        assert image.mode == "RGB" and image.size == (6, 4)
        assert image.getpixel((0, 0)) == (255, 0, 0)
    assert load_image(np.full((4, 6), 7, dtype=np.uint8)).getpixel((5, 3)) == (7, 7, 7)


def test_load_image_errors_name_the_file_and_cause(tmp_path):
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(ImageLoadError, match=r"fake\.jpg.*cannot identify image file"):
        load_image(tmp_path / "fake.jpg")
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="max_pixels"):
        load_image(png_bytes(Image.new("RGB", (100, 100))), max_pixels=5000)
    with pytest.raises(ImageLoadError, match="uint8"):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match="path, bytes"):
        load_image(42)


def test_processor_output_shape_dtype_and_normalisation():
    processor = ImageProcessor(ImageProcessorConfig(image_size=16))
    batch = processor([Image.new("RGB", (40, 30), (255, 255, 255)), np.zeros((8, 8, 3), dtype=np.uint8)])
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == torch.float32
    assert torch.allclose(batch[0], torch.ones(3, 16, 16)) and torch.allclose(
        batch[1], -torch.ones(3, 16, 16)
    )


def test_shortest_crop_keeps_the_centre_and_squash_keeps_everything():
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, :10] = 255  # a white left third
    crop = ImageProcessor(ImageProcessorConfig(image_size=10, resize_mode="shortest_crop"))
    squash = ImageProcessor(ImageProcessorConfig(image_size=10, resize_mode="squash"))
    assert crop([wide]).max() < -0.9  # the white third is cropped away
    assert squash([wide])[0, :, :, 0].min() > 0.9  # the white third is squeezed into the left columns


def test_augment_is_seeded_keeps_size_and_never_flips():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[:, :32, 0] = 255  # red left half, blue right half
    image[:, 32:, 2] = 255
    processor = ImageProcessor()
    for seed in range(20):
        a = processor.augment(Image.fromarray(image), np.random.default_rng(seed))
        b = processor.augment(Image.fromarray(image), np.random.default_rng(seed))
        assert a.tobytes() == b.tobytes() and a.size == (64, 64)
        pixels = np.asarray(a).astype(int)
        assert pixels[32, 2, 0] > pixels[32, 2, 2] and pixels[32, 61, 2] > pixels[32, 61, 0]
    assert processor.augment(Image.fromarray(image), np.random.default_rng(0)).tobytes() != (
        processor.augment(Image.fromarray(image), np.random.default_rng(1)).tobytes()
    )


def test_config_is_strict_and_validated():
    cfg = from_dict(ImageProcessorConfig, {"image_size": 32, "mean": [0.4, 0.4, 0.4]})
    assert cfg.mean == (0.4, 0.4, 0.4)
    with pytest.raises(ValueError, match="resize_mode"):
        ImageProcessor(ImageProcessorConfig(resize_mode="pad"))
