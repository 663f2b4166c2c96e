"""/v1/chat/completions: replies equal the pipeline's, streaming joins to the same text, limits hold."""

import json

from serve_helpers import data_uri, encode, error_of, picture

QUESTIONS = ["what color is the circle?", "how many shapes are there?", "describe the image briefly."]


def conversation(image_bytes: bytes, question: str) -> list[dict]:
    parts = [
        {"type": "image_url", "image_url": {"url": data_uri(image_bytes)}},
        {"type": "text", "text": question},
    ]
    return [{"role": "user", "content": parts}]


def reply_of(response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    return body["choices"][0]["message"]["content"]


def test_reply_equals_pipeline_chat(client, assistant):
    image = encode(picture(3))
    for question in QUESTIONS:
        messages = conversation(image, question)
        response = client.post(
            "/v1/chat/completions", json={"model": "tiny-assistant", "messages": messages, "max_tokens": 24}
        )
        expected = assistant.chat(
            [
                {
                    "role": "user",
                    "content": [{"type": "image", "image": image}, {"type": "text", "text": question}],
                }
            ],
            max_tokens=24,
        )
        assert reply_of(response) == expected
        usage = response.json()["usage"]
        assert (
            usage["prompt_tokens"] > 64
            and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        )


def test_text_only_and_string_content(client, assistant):
    messages = [{"role": "user", "content": "hello there"}]
    assert reply_of(
        client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 8})
    ) == assistant.chat(messages, max_tokens=8)


def test_a_prompt_over_the_context_length_is_a_400(client, assistant):
    words = "red " * (assistant.context_length + 10)
    for stream in (False, True):
        response = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": words}], "stream": stream}
        )
        assert response.status_code == 400 and "context length" in error_of(response)["message"]


def sse_events(text: str) -> list:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_stream_joins_to_the_non_stream_reply(client):
    request = {
        "messages": conversation(encode(picture(4)), "describe the image in detail."),
        "max_tokens": 40,
    }
    whole = reply_of(client.post("/v1/chat/completions", json=request))
    response = client.post(
        "/v1/chat/completions", json={**request, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(response.text)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert len([p for p in pieces if p]) > 1  # really streamed, not one final piece
    assert "".join(pieces) == whole
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_stop_sequences_and_seeded_sampling(client, assistant):
    request = {
        "messages": conversation(encode(picture(5)), "describe the image in detail."),
        "max_tokens": 40,
    }
    whole = reply_of(client.post("/v1/chat/completions", json=request))
    word = whole.split()[1]
    cut = reply_of(client.post("/v1/chat/completions", json={**request, "stop": [word]}))
    assert cut == whole[: whole.index(word)] and word not in cut
    sampled = {**request, "temperature": 1.0, "seed": 7}
    assert reply_of(client.post("/v1/chat/completions", json=sampled)) == reply_of(
        client.post("/v1/chat/completions", json=sampled)
    )


def test_bad_requests_get_4xx(serve):
    image = data_uri(encode(picture(0)))
    part = {"type": "image_url", "image_url": {"url": image}}
    with serve(max_tokens=32, max_images_per_request=2, max_text_chars=50) as c:
        cases = [
            ({"messages": []}, 422, "messages"),
            ({"messages": [{"role": "system", "content": "be nice"}]}, 400, "system messages"),
            ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 33}, 400, "max_tokens"),
            ({"messages": [{"role": "user", "content": "x" * 51}]}, 400, "limit is 50"),
            ({"messages": [{"role": "user", "content": [part] * 3}]}, 400, "too many image inputs"),
            (
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}],
                        }
                    ]
                },
                400,
                "not audio",
            ),
            (
                {"messages": [{"role": "user", "content": "hi"}], "tools": []},
                422,
                "unsupported field 'tools'",
            ),
            ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 422, "n"),
            ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 422, "temperature"),
            ({"messages": [{"role": "user", "content": "<image> what?"}]}, 400, "placeholder"),
            ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "alternate"),
            (
                {
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                    "stop": ["a"] * 5,
                },
                400,
                "stop",
            ),
        ]
        for body, status, words in cases:
            for stream in (False, True):
                response = c.post("/v1/chat/completions", json={**body, "stream": stream})
                assert response.status_code == status, (body, stream, response.text)
                assert words in error_of(response)["message"] or words == error_of(response)["param"], (
                    body,
                    response.text,
                )
        assert reply_of(
            c.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            )
        )
