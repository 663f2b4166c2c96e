"""Audio through the server: CLAP-style embeddings and zero-shot labels, and an assistant that hears
``input_audio`` parts (tiny untrained models: only the plumbing is under test)."""

import base64

import numpy as np
import pytest
from serve_helpers import data_uri, encode, error_of, picture, tone, wav_bytes

pytest.importorskip("soundfile")


@pytest.fixture(scope="module")
def hearing(serve, clap, listener):
    with serve({"clap": clap, "listener": listener}) as client:
        yield client


def test_audio_embeddings_and_labels_equal_the_pipeline(hearing, clap):
    clips = [wav_bytes(tone(0.5, 22050, 440), 22050), wav_bytes(tone(1.0, 16000, 880))]
    refs = [data_uri(clips[0], "audio/wav"), base64.b64encode(clips[1]).decode()]
    response = hearing.post("/v1/embeddings", json={"input": refs, "modality": "audio"})
    assert response.status_code == 200, response.text
    got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, clap.embed_audio(clips), atol=1e-5)
    labels = ["a low tone", "a high tone", "a click"]
    scores = hearing.post("/v1/classify", json={"audio": refs[0], "labels": labels}).json()["scores"]
    assert {s["label"]: s["score"] for s in scores} == pytest.approx(
        clap.classify(clips[:1], labels)[0], abs=1e-5
    )
    image = hearing.post("/v1/classify", json={"image": data_uri(encode(picture(0))), "labels": labels})
    assert image.status_code == 400 and "embed_image" in error_of(image)["message"]


def test_assistant_hears_input_audio(hearing, listener):
    clip = wav_bytes(tone(0.6))
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip).decode(), "format": "wav"}}
    messages = [{"role": "user", "content": [part, {"type": "text", "text": "what do you hear?"}]}]
    response = hearing.post(
        "/v1/chat/completions", json={"model": "listener", "messages": messages, "max_tokens": 12}
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == listener.chat(messages, max_tokens=12)
    too_long = {**part, "input_audio": {"data": base64.b64encode(wav_bytes(tone(2.5))).decode()}}
    refused = hearing.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": [too_long]}]}
    )
    assert refused.status_code == 400 and "limit is 2 s" in error_of(refused)["message"]
    picture_part = {"type": "image_url", "image_url": {"url": data_uri(encode(picture(0)))}}
    wrong = hearing.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": [picture_part]}]}
    )
    assert wrong.status_code == 400 and "takes audio, not image" in error_of(wrong)["message"]
