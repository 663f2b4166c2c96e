"""Image loading and preprocessing: any image-like input -> RGB PIL image -> normalised tensor.

Uses PIL and numpy only (no torchvision), so preprocessing is cheap on CPU and identical everywhere.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000  # ~6300 x 6300; anything larger is treated as a decompression bomb
RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
RESIZE_MODES = ("squash", "shortest_crop")


class ImageLoadError(ValueError):
    """An input that cannot be decoded as an image; ``source`` names it and ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"cannot load image {source}: {reason}")
        self.source, self.reason = source, reason


def _describe(exc: BaseException) -> str:
    """A short cause without the file path PIL puts into some messages."""
    if isinstance(exc, UnidentifiedImageError):
        return "cannot identify image file"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels (decompression bomb guard)"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    text = str(exc)
    if "truncated" in text:
        return "truncated"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_pixels(size: tuple[int, int], max_pixels: int | None, source: str) -> None:
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ImageLoadError(
            source,
            f"{size[0]}x{size[1]} exceeds max_pixels={max_pixels}; raise max_pixels if this is intended",
        )


def _from_array(array: np.ndarray, source: str) -> Image.Image:
    if array.dtype != np.uint8:
        raise ImageLoadError(
            source, f"arrays must be uint8, got {array.dtype}; convert with .astype(np.uint8)"
        )
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(array))
    raise ImageLoadError(source, f"array shape {array.shape} is not HxW, HxWx3 or HxWx4")


def _decode(data: Path | bytes, max_pixels: int | None, source: str) -> Image.Image:
    try:
        with Image.open(data if isinstance(data, Path) else io.BytesIO(data)) as im:
            _check_pixels(im.size, max_pixels, source)  # before decoding: the header gives the size
            im.load()
            return im.convert("RGB") if im.mode != "RGB" else im.copy()
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError) as e:
        raise ImageLoadError(source, _describe(e)) from e


def load_image(src: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load ``src`` as an RGB PIL image.

    Args:
        src: a path (str or Path), encoded bytes, a PIL image, or a uint8 array HxW / HxWx3 / HxWx4
            (alpha is dropped).
        max_pixels: images with more pixels raise instead of being decoded; None disables the guard.

    Raises:
        ImageLoadError: missing, corrupt, truncated, non-image or oversized input; the message names it.
    """
    if isinstance(src, Image.Image):
        _check_pixels(src.size, max_pixels, "<PIL image>")
        return src if src.mode == "RGB" else src.convert("RGB")
    if isinstance(src, np.ndarray):
        image = _from_array(src, "<array>")
        _check_pixels(image.size, max_pixels, "<array>")
        return image.convert("RGB")
    if isinstance(src, bytes | bytearray | memoryview):
        return _decode(bytes(src), max_pixels, f"<{len(src)} bytes>")
    if isinstance(src, str | Path):
        path = Path(src)
        if not path.is_file():
            raise ImageLoadError(str(path), "file not found" if not path.exists() else "not a file")
        return _decode(path, max_pixels, str(path))
    raise TypeError(
        f"cannot load an image from {type(src).__name__}; pass a path, bytes, PIL image or uint8 array"
    )


def image_from_part(part: dict, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image of an OpenAI-style content part: ``{"type": "image", "image": <path|bytes|PIL|array>}``
    or ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` (data URIs only: a
    library call never fetches a remote URL)."""
    if part.get("type") == "image":
        if "image" not in part:
            raise ValueError('an {"type": "image"} part needs an "image" entry (a path, bytes or PIL image)')
        return load_image(part["image"], max_pixels)
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ValueError(
            "image_url must be a data URI (data:image/...;base64,...); remote URLs are not fetched"
        )
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise ValueError("image_url data URIs must be base64-encoded (data:image/png;base64,...)")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error as e:
        raise ValueError(f"image_url holds invalid base64: {e}") from None
    return load_image(data, max_pixels)


@dataclass
class ImageProcessorConfig:
    """How images become model input."""

    image_size: int = 64  # output side in pixels (square)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel mean subtracted after scaling to 0..1
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel std divided by
    resize: str = "bicubic"  # "bicubic" | "bilinear"
    resize_mode: str = (
        "squash"  # "squash" (ignore aspect) | "shortest_crop" (resize shortest side, centre crop)
    )

    def validate(self) -> None:
        """Raise ValueError on values the processor cannot use."""
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.resize not in RESAMPLING:
            raise ValueError(f"resize must be one of {', '.join(RESAMPLING)}, got {self.resize!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each and std > 0, got {self.mean}, {self.std}")


class ImageProcessor:
    """Resize, scale and normalise a batch of images; ``augment`` jitters one training image."""

    def __init__(self, config: ImageProcessorConfig | None = None):
        self.config = config or ImageProcessorConfig()
        self.config.validate()
        self._mean = torch.tensor(self.config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(self.config.std, dtype=torch.float32).view(1, 3, 1, 1)

    def resize(self, image: Image.Image) -> Image.Image:
        """``image`` at the configured size and resize mode."""
        size, method = self.config.image_size, RESAMPLING[self.config.resize]
        if image.size == (size, size):
            return image
        if self.config.resize_mode == "squash":
            return image.resize((size, size), method)
        w, h = image.size
        scale = size / min(w, h)
        crop_w, crop_h = size / scale, size / scale  # the centred region that maps onto the output
        box = ((w - crop_w) / 2, (h - crop_h) / 2, (w + crop_w) / 2, (h + crop_h) / 2)
        return image.resize((size, size), method, box=box)

    def __call__(self, images: list) -> torch.Tensor:
        """A float tensor (B, 3, S, S), normalised; items are anything :func:`load_image` accepts."""
        if not images:
            raise ValueError("ImageProcessor needs at least one image")
        arrays = np.stack([np.asarray(self.resize(load_image(im))) for im in images])  # (B, S, S, 3) uint8
        pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, S, S)
        return (pixels - self._mean) / self._std

    def augment(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        scale: tuple[float, float] = (0.8, 1.0),
        aspect: tuple[float, float] = (0.9, 1.1),
        brightness: float = 0.1,
    ) -> Image.Image:
        """A mildly cropped, rescaled and brightened copy of ``image`` at its own size.

        No horizontal flip: it would turn "left of" captions false.
        """
        image = load_image(image)
        w, h = image.size
        area = float(rng.uniform(*scale))
        ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        crop_w = min(w, w * math.sqrt(area * ratio))
        crop_h = min(h, h * math.sqrt(area / ratio))
        x0 = float(rng.uniform(0, w - crop_w))
        y0 = float(rng.uniform(0, h - crop_h))
        out = image.resize((w, h), RESAMPLING[self.config.resize], box=(x0, y0, x0 + crop_w, y0 + crop_h))
        factor = float(rng.uniform(1 - brightness, 1 + brightness))
        return ImageEnhance.Brightness(out).enhance(factor)
