"""The hostile-input corpus against a real server process (``polymodal.serve.run``: uvicorn, default
limits): every input gets its documented answer (a 4xx with a clear message, or 200 for odd but valid
media), the server stays up, and its memory stays bounded (RSS of the server process, read from /proc)."""

import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import corrupted, data_uri, encode, picture, png_claiming, tone, wav_bytes

from polymodal.serve.process import serve_in_process

pytest.importorskip("soundfile")
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")

MB = 1024 * 1024
BODY_LIMIT = 20 * MB  # ServeConfig's default max_body_bytes


@dataclass
class Case:
    """One hostile (or odd) request and the answer it must get."""

    name: str
    request: dict = field(repr=False)  # keyword arguments of httpx.Client.request
    status: int
    words: str = ""  # in the error message

    def check(self, http: httpx.Client) -> None:
        # a callable content makes a fresh generator per request (a generator is consumed once)
        request = {k: v() if k == "content" and callable(v) else v for k, v in self.request.items()}
        response = http.request(**request)
        assert response.status_code == self.status, (self.name, response.text[:300])
        if self.status >= 400:
            error = response.json()["error"]
            assert self.words in error["message"], (self.name, error)


def embed(data: bytes, mime: str = "image/png") -> dict:
    body = {"input": [data_uri(data, mime)], "modality": "image"}
    return {"method": "POST", "url": "/v1/embeddings", "json": body}


def raw(content, kind: str, url: str = "/v1/embeddings") -> dict:
    return {"method": "POST", "url": url, "content": content, "headers": {"content-type": kind}}


def upload(data: bytes) -> dict:
    form = {"files": {"file": ("clip.wav", data, "audio/wav")}, "data": {"model": "asr"}}
    return {"method": "POST", "url": "/v1/audio/transcriptions", **form}


def animated_gif(frames: int) -> bytes:
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 4, (16, 16), dtype=np.uint8) * 60).convert("P") for _ in range(8)
    ]
    sequence = [images[i % 8] for i in range(frames)]
    return encode(sequence[0], "GIF", save_all=True, append_images=sequence[1:], duration=10)


def lying_wavs() -> dict[str, bytes]:
    wav = wav_bytes(tone(0.5))
    data_at, fmt_at = wav.index(b"data"), wav.index(b"fmt ")
    return {
        "claims 2 GB of samples": wav[: data_at + 4] + struct.pack("<I", 0x7FFFFFF0) + wav[data_at + 8 :],
        "claims 1 Hz": wav[: fmt_at + 12] + struct.pack("<I", 1) + wav[fmt_at + 16 :],
        "claims 0 channels": wav[: fmt_at + 10] + struct.pack("<H", 0) + wav[fmt_at + 12 :],
        "header only": wav[:40],
    }


def big_base64_body(megabytes: int) -> bytes:
    """A JSON embeddings body holding one base64 'image' of about ``megabytes`` MB."""
    payload = b"A" * (megabytes * MB)
    return b'{"modality": "image", "input": ["data:image/png;base64,' + payload + b'"]}'


def chunks(body: bytes, size: int = MB):
    """The body as a generator: sent chunked, with no Content-Length for the server to check first."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    jpeg = encode(picture(1, size=128), "JPEG")
    levels = np.linspace(0, 65535, 48 * 48).reshape(48, 48).astype(np.uint16)
    wavs = lying_wavs()
    over_limit = big_base64_body(25)
    return [
        Case("PNG bomb 60000x60000", embed(png_claiming(60000, 60000)), 413, "decompression bomb"),
        Case("PNG over max_pixels", embed(png_claiming(5000, 5000)), 413, "5000x5000"),
        Case("1x1 PNG", embed(encode(Image.new("RGB", (1, 1), (200, 10, 10)))), 200),
        Case("truncated JPEG", embed(jpeg[: len(jpeg) // 2], "image/jpeg"), 400, "truncated"),
        Case("corrupt PNG", embed(corrupted(encode(picture(3)))), 400, "cannot be decoded"),
        Case("CMYK JPEG", embed(encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"), "image/jpeg"), 200),
        Case("16-bit PNG", embed(encode(Image.fromarray(levels))), 200),
        Case("GIF of 3000 frames", embed(animated_gif(3000), "image/gif"), 200),
        Case("not an image", embed(b"hello, not an image"), 415, "not a supported image"),
        Case("TIFF", embed(encode(picture(2), "TIFF"), "image/tiff"), 415, "not a supported image"),
        Case("WAV " + "claims 2 GB of samples", upload(wavs["claims 2 GB of samples"]), 200),
        Case("WAV claims 1 Hz", upload(wavs["claims 1 Hz"]), 413, "limit is 30 s"),
        Case("WAV claims 0 channels", upload(wavs["claims 0 channels"]), 415, "not readable"),
        Case("WAV header only", upload(wavs["header only"]), 415, "not readable"),
        Case("bad JSON", raw(b'{"input": ', "application/json"), 400, "not valid JSON"),
        Case("nested JSON", raw(b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"), 400),
        Case("lone surrogate", raw(b'{"input": "\\ud800"}', "application/json"), 400, "lone surrogate"),
        Case("text/plain body", raw(b'{"input": "x"}', "text/plain"), 415, "application/json"),
        Case("form body", raw(b"input=x", "application/x-www-form-urlencoded"), 415, "application/json"),
        Case("JSON upload", raw(b'{"file": "x"}', "application/json", "/v1/audio/transcriptions"), 415, "multipart"),
        Case("25 MB base64, declared", raw(over_limit, "application/json"), 413, f"{BODY_LIMIT} bytes"),
        Case("25 MB base64, chunked", raw(lambda: chunks(over_limit), "application/json"), 413, f"{BODY_LIMIT} bytes"),
        Case("GET on a POST route", {"method": "GET", "url": "/v1/embeddings"}, 405),
    ]  # fmt: skip


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``) or its peak (``VmHWM``) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, asr):
    """``polymodal.serve.run`` in its own process (tiny-clip and a tiny ASR); yields (process, base URL)."""
    folder = tmp_path_factory.mktemp("memory")
    config = {"models": ["tiny-clip", f"asr={asr.save(folder / 'asr')}"], "log_level": "warning"}
    with serve_in_process(config, threads=2, ready_timeout_s=90) as running:
        yield running


def test_corpus_gets_4xx_and_memory_stays_bounded(server, corpus):
    process, url = server
    with httpx.Client(base_url=url, timeout=60) as http:
        ready_mb = rss_mb(process.pid)
        for case in corpus:  # warm-up: first decodes, allocator pools, lazy imports
            case.check(http)
        warm_mb = rss_mb(process.pid)
        for _ in range(3):
            for case in corpus:
                case.check(http)
                assert process.poll() is None, f"the server died on {case.name}"
        after_mb, peak_mb = rss_mb(process.pid), rss_mb(process.pid, "VmHWM")
        assert http.get("/health").json() == {"status": "ok"}
        assert http.post("/v1/embeddings", json={"input": "still serving"}).status_code == 200
    print(f"server RSS: ready {ready_mb:.0f} MB, after warm-up {warm_mb:.0f} MB, "
          f"after 3 more passes {after_mb:.0f} MB, peak {peak_mb:.0f} MB")  # fmt: skip
    assert after_mb - warm_mb < 40, "memory grows with each pass over the corpus"
    assert peak_mb - ready_mb < 150, "a hostile input was decoded or buffered whole"


@pytest.mark.slow
def test_a_100_mb_upload_is_cut_off_at_the_limit(server):
    """~100 MB of base64 streamed (chunked, so the server cannot refuse it from a header): the server stops
    reading at its 20 MB limit and answers 413; its memory grows by about the limit, not the upload."""
    process, url = server
    body = big_base64_body(100)
    with httpx.Client(base_url=url, timeout=120) as http:
        before_mb = rss_mb(process.pid)
        start = time.perf_counter()
        response = http.post(
            "/v1/embeddings", content=chunks(body), headers={"content-type": "application/json"}
        )
        seconds = time.perf_counter() - start
        assert response.status_code == 413 and f"{BODY_LIMIT} bytes" in response.json()["error"]["message"]
        declared = http.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        peak_mb = rss_mb(process.pid, "VmHWM")
        assert http.post("/v1/embeddings", json={"input": "still serving"}).status_code == 200
    print(f"100 MB upload: 413 after {seconds:.1f} s; RSS before {before_mb:.0f} MB, peak {peak_mb:.0f} MB")
    assert process.poll() is None
    assert peak_mb - before_mb < 100, "the server buffered far more than its body limit"
