"""Helpers for the server tests: encoded images and audio, data URIs, the error envelope, a real uvicorn
server on a free loopback port."""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import struct
import threading
import time
import zlib

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


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a huge greyscale image with a few compressed rows: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress((b"\x00" + b"\x00" * width) * 4, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def corrupted(png: bytes) -> bytes:
    """A PNG whose header is intact and whose compressed pixels are garbage."""
    data = bytearray(png)
    start = png.index(b"IDAT") + 8
    data[start : start + 64] = bytes(range(64))
    return bytes(data)


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


@contextlib.contextmanager
def running(models: dict, **settings):
    """Serve ``models`` (served name -> pipeline) with uvicorn in a thread; yields the base URL."""
    import uvicorn

    from polymodal.serve import ServeConfig, create_app

    app = create_app(ServeConfig(models=list(models), **settings), models)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", limit_concurrency=64))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
