"""Helpers for the server tests: encoded images and audio, data URIs, the error envelope."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def picture(seed: int = 0, size: int = 48) -> Image.Image:
    """A random RGB image."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def error_of(response) -> dict:
    """The error object of an envelope, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    return body["error"]


def wav_bytes(wave: np.ndarray, rate: int = 16000, fmt: str = "WAV") -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def tone(seconds: float = 0.5, rate: int = 16000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
