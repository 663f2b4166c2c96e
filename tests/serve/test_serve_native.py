"""Native endpoints: /v1/classify, /v1/search, /analyze-image and /document-analysis."""

import pytest
from serve_helpers import data_uri, encode, error_of, picture

from polymodal.search import build_folder_index, open_index, search_index


def test_classify_equals_the_pipeline(client, clip):
    image = encode(picture(6))
    labels = ["red", "green", "blue"]
    response = client.post("/v1/classify", json={"image": data_uri(image), "labels": labels})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = clip.classify([image], labels)[0]
    scores = {s["label"]: s["score"] for s in body["scores"]}
    assert scores == pytest.approx(expected, abs=1e-5)
    assert body["label"] == max(expected, key=expected.get)
    assert [s["score"] for s in body["scores"]] == sorted(scores.values(), reverse=True)
    templated = client.post(
        "/v1/classify", json={"image": data_uri(image), "labels": labels, "templates": ["a {} shape"]}
    )
    expected = clip.classify([image], labels, templates=["a {} shape"])[0]
    assert {s["label"]: s["score"] for s in templated.json()["scores"]} == pytest.approx(expected, abs=1e-5)


def test_classify_refusals(client):
    image = data_uri(encode(picture(0)))
    cases = [
        ({"image": image, "labels": ["one"]}, 422),
        ({"image": image, "labels": ["a", "a"]}, 400),
        ({"labels": ["a", "b"]}, 400),
        ({"image": image, "audio": image, "labels": ["a", "b"]}, 400),
        ({"image": image, "labels": ["a", "b"], "templates": ["no placeholder"]}, 400),
    ]
    for body, status in cases:
        response = client.post("/v1/classify", json=body)
        assert response.status_code == status, (body, response.text)
        error_of(response)


@pytest.fixture(scope="module")
def gallery(clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    for i in range(6):
        picture(10 + i).save(folder / f"img{i}.png")
    out = tmp_path_factory.mktemp("index") / "idx"
    build_folder_index(clip, folder, out)
    return folder, out


def test_search_by_text_and_by_image(serve, clip, gallery):
    folder, out = gallery
    with serve(index=str(out)) as c:
        response = c.post("/v1/search", json={"query": "a red circle", "k": 3})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        expected = search_index(clip, open_index(out), "a red circle", k=3)
        assert [r["id"] for r in results] == [h.id for h in expected]
        assert [r["rank"] for r in results] == [1, 2, 3]
        assert results[0]["metadata"]["path"] == expected[0].metadata["path"]
        by_image = c.post(
            "/v1/search", json={"image": data_uri((folder / "img4.png").read_bytes()), "k": 1}
        ).json()
        assert by_image["results"][0]["metadata"]["path"].endswith("img4.png")
        assert by_image["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert c.post("/v1/search", json={"query": "x", "k": 0}).status_code == 422
        assert c.post("/v1/search", json={}).status_code == 400


def test_analyze_image_tasks_equal_the_pipeline(client, assistant):
    image = encode(picture(8))
    uri = data_uri(image)
    caption = client.post("/analyze-image", json={"image": uri, "task": "caption"}).json()
    assert caption == {"model": "tiny-assistant", "task": "caption", "answer": assistant.caption(image)}
    detailed = client.post("/analyze-image", json={"image": uri, "task": "describe", "max_tokens": 48}).json()
    assert detailed["answer"] == assistant.caption(image, style="detailed", max_tokens=48)
    vqa = client.post(
        "/analyze-image", json={"image": uri, "task": "vqa", "question": "how many shapes?"}
    ).json()
    assert vqa["answer"] == assistant.ask(image, "how many shapes?")
    missing = client.post("/analyze-image", json={"image": uri, "task": "vqa"})
    assert missing.status_code == 400 and error_of(missing)["param"] == "question"


def test_analyze_image_puts_the_image_where_the_model_was_trained_to_see_it(client, assistant):
    image = encode(picture(8))
    body = {"image": data_uri(image), "task": "vqa", "question": "what color is the circle?"}
    assistant.model.config.image_position = "after"
    try:
        answer = client.post("/analyze-image", json=body).json()["answer"]
        assert answer == assistant.ask(image, "what color is the circle?")
    finally:
        assistant.model.config.image_position = "before"


def test_document_analysis_answers_with_the_assistant(client, assistant):
    image = encode(picture(9))
    response = client.post(
        "/document-analysis", json={"image": data_uri(image), "question": "what is the total?"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == assistant.ask(image, "what is the total?")
    assert (
        client.post("/document-analysis", json={"image": data_uri(image), "question": "  "}).status_code
        == 400
    )
