"""Hostile and odd inputs: each gets a 4xx with a clear message (or works, where documented in
polymodal.serve.media), and the server keeps answering afterwards."""

import io
import struct
import time

import numpy as np
import pytest
from PIL import Image
from serve_helpers import corrupted, data_uri, encode, error_of, picture, png_claiming, tone, wav_bytes

pytest.importorskip("soundfile")


def embed_image(client, data: bytes, mime: str = "image/png"):
    return client.post("/v1/embeddings", json={"input": [data_uri(data, mime)], "modality": "image"})


def vector(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"][0]["embedding"], dtype=np.float32)


def still_serving(client) -> None:
    assert client.get("/health").status_code == 200
    assert client.post("/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_bombs_and_broken_images_get_4xx(client):
    jpeg = encode(picture(1, size=128), "JPEG")
    cases = [
        (png_claiming(60000, 60000), 413, "decompression bomb); the limit is"),  # Pillow's own guard, at open
        (png_claiming(5000, 5000), 413, "5000x5000"),  # under Pillow's guard, over max_pixels
        (jpeg[: len(jpeg) // 2], 400, "truncated"),
        (corrupted(encode(picture(3))), 400, "cannot be decoded"),
        (b"hello, not an image", 415, "not a supported image"),
        (encode(picture(2), "TIFF"), 415, "not a supported image"),  # decodable by Pillow, not accepted
    ]
    for data, status, words in cases:
        start = time.perf_counter()
        response = embed_image(client, data)
        assert response.status_code == status, (words, response.text)
        assert words in error_of(response)["message"]
        assert time.perf_counter() - start < 2.0  # refused from the header, nothing big decoded
    still_serving(client)


def test_odd_but_valid_images_work(client, clip):
    tiny = Image.new("RGB", (1, 1), (200, 10, 10))
    assert np.allclose(vector(embed_image(client, encode(tiny))), clip.embed_image([tiny])[0], atol=1e-5)
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red in CMYK
    cmyk_jpeg = encode(cmyk, "JPEG")
    as_rgb = Image.open(io.BytesIO(cmyk_jpeg)).convert("RGB")
    assert np.allclose(
        vector(embed_image(client, cmyk_jpeg, "image/jpeg")), clip.embed_image([as_rgb])[0], atol=1e-5
    )
    levels = np.linspace(0, 65535, 48 * 48).reshape(48, 48).astype(np.uint16)  # 16-bit grey ramp
    eight_bit = Image.fromarray(np.rint(levels / 257.0).astype(np.uint8)).convert("RGB")
    ramp = vector(embed_image(client, encode(Image.fromarray(levels))))
    assert np.allclose(ramp, clip.embed_image([eight_bit])[0], atol=1e-5)  # scaled, not clipped to white
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA")
    assert np.allclose(
        vector(embed_image(client, encode(rgba))), clip.embed_image([encode(rgba)])[0], atol=1e-5
    )


def test_animated_gif_uses_its_first_frame(client, clip):
    rng = np.random.default_rng(0)
    frames = [
        Image.fromarray(rng.integers(0, 4, (16, 16), dtype=np.uint8) * 60).convert("P") for _ in range(3000)
    ]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)
    assert Image.open(io.BytesIO(gif)).n_frames == 3000
    start = time.perf_counter()
    got = vector(embed_image(client, gif, "image/gif"))
    assert time.perf_counter() - start < 2.0
    first = Image.open(io.BytesIO(gif)).convert("RGB")
    assert np.allclose(got, clip.embed_image([first])[0], atol=1e-5)


def upload(client, data: bytes, **form):
    return client.post(
        "/v1/audio/transcriptions",
        files={"file": ("clip.wav", data, "audio/wav")},
        data={"model": "asr", **form},
    )


def test_transcription_and_lying_wav_headers(serve, asr, clip):
    wav = wav_bytes(tone(0.5))
    data_at = wav.index(b"data")
    fmt_at = wav.index(b"fmt ")
    longer = (
        wav[: data_at + 4] + struct.pack("<I", 0x7FFFFFF0) + wav[data_at + 8 :]
    )  # claims ~2 GB of samples
    slow = wav[: fmt_at + 12] + struct.pack("<I", 1) + wav[fmt_at + 16 :]  # claims 1 Hz: 8000 s long
    no_channels = wav[: fmt_at + 10] + struct.pack("<H", 0) + wav[fmt_at + 12 :]
    with serve({"asr": asr, "tiny-clip": clip}, max_audio_seconds=3.0) as c:
        ok = upload(c, wav)
        assert ok.status_code == 200 and ok.json() == {"text": asr.transcribe([wav])[0]}
        assert upload(c, wav, response_format="text").text == ok.json()["text"]
        assert upload(c, longer).json() == ok.json()  # libsndfile counts the samples that exist
        for data, status, words in [
            (slow, 413, "limit is 3 s"),
            (no_channels, 415, "not readable"),
            (wav_bytes(tone(3.5)), 413, "3.50 s long"),
            (wav[:40], 415, "not readable"),
            (b"", 400, "empty"),
        ]:
            response = upload(c, data)
            assert response.status_code == status, (words, response.text)
            assert words in error_of(response)["message"]
        json_body = c.post("/v1/audio/transcriptions", json={"file": "x"})
        assert json_body.status_code == 415 and "multipart" in error_of(json_body)["message"]
        assert c.post("/v1/audio/transcriptions", files={"other": ("a", b"x")}).status_code == 422
        assert upload(c, wav).status_code == 200


def test_body_limits_bad_json_and_content_types(serve):
    with serve(max_body_bytes=2000) as c:
        big = c.post("/v1/embeddings", json={"input": "x" * 5000})
        assert big.status_code == 413 and "2000 bytes" in error_of(big)["message"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b" " * 500

        streamed = c.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413, streamed.text
        upload_big = c.post(
            "/v1/audio/transcriptions", files={"file": ("a.wav", b"\x00" * 5000, "audio/wav")}
        )
        assert upload_big.status_code == 413
        for content, kind, status in [
            (b'{"input": ', "application/json", 400),
            (b"\xff\xfe\x00", "application/json", 400),
            (b'{"input": "x"}', "text/plain", 415),
            (b'{"input": "x"}', "application/x-www-form-urlencoded", 415),
            (b"[1, 2]", "application/json", 422),
        ]:
            response = c.post("/v1/embeddings", content=content, headers={"content-type": kind})
            assert response.status_code == status, (content, kind, response.text)
            error_of(response)
        empty = c.post("/v1/embeddings", content=b"", headers={"content-type": "application/json"})
        assert (
            empty.status_code == 422
            and error_of(empty)["message"] == "the request body is empty: send a JSON object"
        )
        no_type = c.post("/v1/embeddings", content=b'{"input": "x"}', headers={"content-type": ""})
        assert no_type.status_code == 415
        assert c.get("/v1/embeddings").status_code == 405
        unknown = c.get("/v2/nothing")
        assert unknown.status_code == 404 and error_of(unknown)
        still_serving(c)


def test_hostile_json_gets_400(client):
    def post(path: str, raw: bytes):
        return client.post(path, content=raw, headers={"content-type": "application/json"})

    lone = post("/v1/embeddings", b'{"input": ["ok", "\\ud800 broken"]}')
    assert lone.status_code == 400 and error_of(lone)["param"] == "input[1]"
    chat = post("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\udfff"}]}')
    assert chat.status_code == 400 and "lone surrogate" in error_of(chat)["message"]
    assert post("/v1/embeddings", b'{"input": "smile \\ud83d\\ude00"}').status_code == 200  # a valid pair
    deep = post("/v1/embeddings", b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert deep.status_code == 400 and error_of(deep)
    huge_number = post("/v1/embeddings", b'{"input": "x", "dimensions": 1' + b"0" * 5000 + b"}")
    assert huge_number.status_code == 400
    still_serving(client)
