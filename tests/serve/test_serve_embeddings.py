"""/v1/embeddings: texts, images and base64 against the pipeline's own output, caching and refusals."""

import base64

import numpy as np
from serve_helpers import data_uri, encode, error_of, picture


def vectors(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def test_text_embeddings_equal_the_pipeline(client, clip):
    texts = ["a red circle", "two blue squares on the left", ""]
    response = client.post("/v1/embeddings", json={"model": "tiny-clip", "input": texts})
    body = response.json()
    assert body["object"] == "list" and body["model"] == "tiny-clip"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert body["usage"]["prompt_tokens"] > 0
    np.testing.assert_allclose(vectors(response), clip.embed_text(texts), atol=1e-5)
    single = client.post("/v1/embeddings", json={"input": "a red circle"})  # the only dual encoder
    np.testing.assert_allclose(vectors(single)[0], clip.embed_text(["a red circle"])[0], atol=1e-5)


def test_base64_round_trips_to_the_float_encoding(client):
    request = {"input": ["green triangle", "yellow cross"]}
    floats = vectors(client.post("/v1/embeddings", json=request))
    encoded = client.post("/v1/embeddings", json={**request, "encoding_format": "base64"}).json()["data"]
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded])
    assert decoded.shape == floats.shape
    np.testing.assert_array_equal(decoded, floats)


def test_image_embeddings_equal_the_pipeline(client, clip):
    images = [encode(picture(1)), encode(picture(2), "JPEG")]
    uris = [data_uri(images[0]), data_uri(images[1], "image/jpeg")]
    response = client.post("/v1/embeddings", json={"input": uris, "modality": "image"})
    np.testing.assert_allclose(vectors(response), clip.embed_image(images), atol=1e-5)
    bare = base64.b64encode(images[0]).decode()  # bare base64 works too
    np.testing.assert_allclose(
        vectors(client.post("/v1/embeddings", json={"input": [bare], "modality": "image"}))[0],
        vectors(response)[0],
        atol=1e-6,
    )


def cache_hits(client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('polymodal_cache_lookups_total{result="hit"}'):
            return float(line.split()[-1])
    return 0.0


def test_repeated_inputs_hit_the_cache(client):
    request = {"input": ["a cached sentence about a purple star"]}
    first = vectors(client.post("/v1/embeddings", json=request))
    before = cache_hits(client)
    second = vectors(client.post("/v1/embeddings", json=request))
    assert cache_hits(client) == before + 1
    np.testing.assert_array_equal(first, second)


def test_refusals_have_precise_messages(client):
    cases = [
        ({"input": []}, 400, "empty"),
        ({"input": "x", "model": "nope"}, 404, "not served"),
        ({"input": "x", "model": "tiny-assistant"}, 400, "cannot do embed_text"),
        ({"input": "x", "modality": "audio"}, 400, "embed_audio"),
        ({"input": "x", "dimensions": 7}, 400, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
        ({"input": [1, 2, 3]}, 422, "input"),
        ({"input": ["not base64!"], "modality": "image"}, 400, "base64"),
        ({"input": ["data:text/plain;base64,aGVsbG8="], "modality": "image"}, 415, "not an image"),
        ({"input": ["https://example.com/a.png"], "modality": "image"}, 400, "not fetched"),
    ]
    for body, status, words in cases:
        response = client.post("/v1/embeddings", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in error_of(response)["message"], (body, response.text)


def test_errors_name_the_failing_item(client, assistant):
    good = data_uri(encode(picture(0)))
    bad = client.post(
        "/v1/embeddings", json={"input": [good, good, "data:image/png;base64,AAAA"], "modality": "image"}
    )
    assert bad.status_code == 415 and error_of(bad)["param"] == "input[2]"
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
    assert chat.status_code == 415 and error_of(chat)["param"] == "messages[0].content[1]"


def test_count_and_length_limits(serve):
    with serve(max_inputs=3, max_text_chars=20, max_images_per_request=1) as c:
        assert c.post("/v1/embeddings", json={"input": ["a"] * 4}).status_code == 400
        long = c.post("/v1/embeddings", json={"input": ["x" * 21]})
        assert long.status_code == 400 and error_of(long)["param"] == "input[0]"
        uri = data_uri(encode(picture(0)))
        two = c.post("/v1/embeddings", json={"input": [uri, uri], "modality": "image"})
        assert two.status_code == 400 and "too many image inputs" in error_of(two)["message"]
