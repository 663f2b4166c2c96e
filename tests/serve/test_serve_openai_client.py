"""Proof of compatibility: the official ``openai`` Python client, unchanged, against a real uvicorn server on a
loopback port: models, embeddings (texts and images), chat with an image (streamed and not),
transcription, and errors mapped to the client's exception classes."""

import numpy as np
import pytest
from serve_helpers import data_uri, running, tone, wav_bytes

openai = pytest.importorskip("openai")
pytest.importorskip("soundfile")

KEY = "sk-polymodal-test"
QUESTION = "describe the image in detail."  # a reply of several pieces


@pytest.fixture(scope="module")
def scene() -> bytes:
    """PNG bytes of one shapes-world scene."""
    import io

    from polymodal.data.worlds.shapes import ShapesWorld

    buffer = io.BytesIO()
    ShapesWorld(seed=3, split="test", image_size=64).sample(0).image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(models, asr):
    with running({**models, "asr": asr}, api_keys=[KEY]) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def image_question(scene: bytes) -> list[dict]:
    parts = [
        {"type": "image_url", "image_url": {"url": data_uri(scene)}},
        {"type": "text", "text": QUESTION},
    ]
    return [{"role": "user", "content": parts}]


def test_models_and_embeddings(client, clip, scene):
    assert {m.id for m in client.models.list()} == {"tiny-clip", "tiny-assistant", "asr"}
    assert client.models.retrieve("tiny-clip").owned_by == "polymodal"
    texts = ["a red circle", "two blue squares"]
    response = client.embeddings.create(model="tiny-clip", input=texts)  # the client asks for base64
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert np.allclose(got, clip.embed_text(texts), atol=1e-5)
    assert response.usage.prompt_tokens > 0 and [d.index for d in response.data] == [0, 1]
    floats = client.embeddings.create(model="tiny-clip", input=texts[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, got[0], atol=1e-6)
    images = client.embeddings.create(
        model="tiny-clip", input=[data_uri(scene)], extra_body={"modality": "image"}
    )
    assert np.allclose(images.data[0].embedding, clip.embed_image([scene])[0], atol=1e-5)


def test_chat_with_an_image_streamed_and_not(client, assistant, scene):
    messages = image_question(scene)
    completion = client.chat.completions.create(
        model="tiny-assistant", messages=messages, max_tokens=48, temperature=0
    )
    reply = completion.choices[0].message.content
    assert reply == assistant.ask(scene, QUESTION, max_tokens=48)
    assert (
        completion.choices[0].finish_reason in ("stop", "length") and completion.usage.completion_tokens > 0
    )
    stream = client.chat.completions.create(
        model="tiny-assistant", messages=messages, max_tokens=48, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == reply and sum(bool(p) for p in pieces) > 1
    assert chunks[-1].usage.total_tokens == completion.usage.total_tokens
    assert len({c.id for c in chunks}) == 1


def test_transcription(client, asr):
    wav = wav_bytes(tone(0.6))
    transcript = client.audio.transcriptions.create(model="asr", file=("clip.wav", wav, "audio/wav"))
    assert transcript.text == asr.transcribe([wav])[0]
    text = client.audio.transcriptions.create(
        model="asr", file=("clip.wav", wav, "audio/wav"), response_format="text"
    )
    assert text == transcript.text


def test_errors_become_client_exceptions(client):
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError, match="input is empty"):
        client.embeddings.create(model="tiny-clip", input=[])
    with pytest.raises(openai.BadRequestError, match="not valid base64"):
        client.embeddings.create(model="tiny-clip", input=["%%%"], extra_body={"modality": "image"})
    with pytest.raises(openai.UnprocessableEntityError, match="unsupported field 'tools'"):
        client.chat.completions.create(
            model="tiny-assistant", messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f"}}],
        )  # fmt: skip
    wrong = client.with_options(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        wrong.models.list()
