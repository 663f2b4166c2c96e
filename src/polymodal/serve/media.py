"""Images and audio from requests: data URIs, base64 or (allowlisted) URLs -> decoded inputs, safely.

Sizes are read from headers before anything is decoded: an image whose header promises more than
``max_pixels`` (a decompression bomb: huge dimensions in a tiny file) and a clip whose header promises more
than ``max_audio_seconds`` are refused with 413 without decoding a pixel or a sample.

What is accepted, and why:
- images: PNG, JPEG, GIF, WEBP and BMP only (Pillow reads dozens more formats, some through external
  programs; an allowlist keeps that surface closed). Any mode works: CMYK, palette, grey and alpha images
  are converted to RGB as :func:`polymodal.data.images.load_image` does, and 16-bit images are scaled to
  8 bits (a plain conversion would clip them to white). Animated images (GIF, WEBP) use their first frame
  (only that frame is decoded, however many there are). Truncated or corrupt files get 400.
- audio: WAV, FLAC and OGG (libsndfile), read by :func:`polymodal.data.audio_io.read_audio`, which stops at
  the duration limit even when a header lies about the length.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from polymodal.data.audio_io import AudioError, AudioLimits, audio_info, read_audio
from polymodal.serve.errors import ServeError
from polymodal.serve.fetch import FetchPolicy, fetch_url

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def decode_base64(payload: str, what: str, param: str | None = None) -> bytes:
    """Standard base64 (whitespace ignored) -> bytes; 400 naming ``what`` when it is not base64."""
    cleaned = "".join(payload.split())
    try:
        data = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(400, f"{what} is not valid base64", "invalid_base64", param) from None
    if not data:
        raise ServeError(400, f"{what} is empty", "empty_input", param)
    return data


def split_data_uri(uri: str, what: str, param: str | None = None) -> tuple[str, bytes]:
    """``data:<mime>;base64,<payload>`` -> (mime, bytes)."""
    header, comma, payload = uri.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        raise ServeError(
            400, f"{what} must be a base64 data URI (data:<type>;base64,...)", "invalid_data_uri", param
        )
    return header[5:].split(";", 1)[0].lower(), decode_base64(payload, what, param)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB of any decoded mode; 16-bit grey is scaled to 8 bits instead of clipped."""
    if image.mode in SIXTEEN_BIT_MODES:
        levels = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(levels / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
        return Image.fromarray(grey).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(data: bytes, max_pixels: int, param: str | None = None) -> Image.Image:
    """Decode one image under the limits (see the module docstring)."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > max_pixels:
                raise ServeError(
                    413, f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels",
                    "image_too_large", param,
                )  # fmt: skip
            image.load()  # the first frame only
            return _to_rgb(image)
    except ServeError:
        raise
    except Image.DecompressionBombError:
        raise ServeError(
            413, f"the image has too many pixels (decompression bomb); the limit is {max_pixels} pixels",
            "image_too_large", param,
        ) from None  # fmt: skip
    except UnidentifiedImageError:
        formats = ", ".join(IMAGE_FORMATS)
        raise ServeError(
            415, f"not a supported image; send one of {formats}", "unsupported_image", param
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        reason = "truncated" if "truncated" in str(e) else "corrupt"
        raise ServeError(400, f"the image cannot be decoded ({reason})", "corrupt_image", param) from None


def decode_audio(data: bytes, target_sr: int, max_seconds: float, param: str | None = None) -> np.ndarray:
    """Decode one WAV/FLAC/OGG clip to mono float32 at ``target_sr`` under the duration limit."""
    try:
        info = audio_info(data)
    except AudioError as e:
        raise ServeError(415, str(e), "unsupported_audio", param) from None
    if info.seconds > max_seconds:
        raise ServeError(
            413,
            f"the audio is {info.seconds:.2f} s long; the limit is {max_seconds:g} s",
            "audio_too_long",
            param,
        )
    try:
        return read_audio(data, target_sr, AudioLimits(max_seconds=max_seconds))
    except AudioError as e:
        raise ServeError(400, str(e), "invalid_audio", param) from None


MEDIA_NOUNS = {"image": "an image", "audio": "audio"}  # how error messages name one input of a kind


def inline_bytes(ref: object, kind: str, param: str | None = None) -> bytes:
    """The bytes a request carries inline for ``kind`` ("image" | "audio"): a data URI whose MIME type is
    of that kind, or bare base64; anything else is a 400 (415 for a data URI of another type)."""
    noun = MEDIA_NOUNS[kind]
    if not isinstance(ref, str) or not ref:
        raise ServeError(
            400, f"{noun} must be a non-empty string (data URI or base64)", f"invalid_{kind}", param
        )
    if ref.startswith("data:"):
        mime, data = split_data_uri(ref, f"the {kind}", param)
        if not mime.startswith(f"{kind}/"):
            raise ServeError(415, f"the data URI holds {mime!r}, not {noun}", f"unsupported_{kind}", param)
        return data
    return decode_base64(ref, f"the {kind}", param)


@dataclass(frozen=True)
class MediaReader:
    """Turns image and audio references from requests into bytes and decoded inputs under the limits.
    Every method blocks (fetching, decoding): call them in a worker thread."""

    max_pixels: int
    max_audio_seconds: float
    fetch: FetchPolicy

    def image_bytes(self, ref: str, param: str | None = None) -> bytes:
        """The encoded image a reference names: a data URI, an http(s) URL (if allowed) or bare base64."""
        if isinstance(ref, str) and ref.startswith(("http://", "https://")):
            return fetch_url(ref, self.fetch)
        return inline_bytes(ref, "image", param)

    def image(self, data: bytes, param: str | None = None) -> Image.Image:
        """Decode encoded image bytes."""
        return decode_image(data, self.max_pixels, param)

    def audio_bytes(self, ref: str, param: str | None = None) -> bytes:
        """The encoded audio a reference names: a data URI or bare base64 (audio URLs are never fetched)."""
        return inline_bytes(ref, "audio", param)

    def audio(self, data: bytes, target_sr: int, param: str | None = None) -> np.ndarray:
        """Decode encoded audio bytes to mono float32 at ``target_sr``."""
        return decode_audio(data, target_sr, self.max_audio_seconds, param)
