"""The batched operations: encoded images decode inside the batch, a bad one fails only its place, texts
report the tokens the model read, and models load on the process's single torch thread."""

import threading

import numpy as np
from serve_helpers import corrupted, encode, picture

from polymodal.serve.compute import torch_thread
from polymodal.serve.config import ServeConfig
from polymodal.serve.errors import ServeError
from polymodal.serve.fetch import FetchPolicy
from polymodal.serve.media import MediaReader
from polymodal.serve.ops import Encoded, batch_function
from polymodal.serve.state import load_pipelines


def media(max_pixels: int = 4096 * 4096) -> MediaReader:
    return MediaReader(max_pixels, 30.0, FetchPolicy((), False, 1 << 20, 5.0))


def test_encoded_images_decode_in_the_batch_and_a_bad_one_keeps_its_error(clip):
    good = [encode(picture(3)), encode(picture(4), "JPEG")]
    items = [Encoded(good[0], "input[0]"), Encoded(corrupted(good[0]), "input[1]"), Encoded(good[1], "x")]
    results = batch_function(clip, "embed_image", media())(items)
    assert (
        isinstance(results[1], ServeError)
        and results[1].status_code == 400
        and results[1].param == "input[1]"
    )
    np.testing.assert_allclose(np.stack([results[0], results[2]]), clip.embed_image(good), atol=1e-5)
    refused = batch_function(clip, "embed_image", media(max_pixels=100))([Encoded(good[0], "input[0]")])
    assert isinstance(refused[0], ServeError) and refused[0].status_code == 413


def test_text_rows_carry_the_tokens_the_model_read(clip):
    texts = ["a red circle", "word " * 100]  # the second is cut at the context length
    rows = batch_function(clip, "embed_text")(texts)
    _, mask = clip.tokenizer(texts, context_length=clip.context_length)
    assert [tokens for _, tokens in rows] == mask.sum(dim=1).tolist()
    assert rows[1][1] == clip.context_length
    np.testing.assert_allclose(np.stack([v for v, _ in rows]), clip.embed_text(texts), atol=1e-6)


def test_media_embeddings_need_the_media_reader(clip):
    try:
        batch_function(clip, "embed_image")
    except ValueError as e:
        assert "MediaReader" in str(e)
    else:
        raise AssertionError("embed_image without a MediaReader was accepted")


def test_models_load_on_the_torch_thread(monkeypatch):
    seen = []

    def fake_load(source, precision=None):
        seen.append(threading.current_thread().name)
        return source

    monkeypatch.setattr("polymodal.hub.load", fake_load)
    loaded = load_pipelines(ServeConfig(models=["a=tiny-clip", "tiny-clip"]))
    assert loaded == {"a": "tiny-clip", "tiny-clip": "tiny-clip"}
    name = torch_thread().submit(lambda: threading.current_thread().name).result()
    assert seen == [name, name] and name.startswith("polymodal-torch")
