"""A real uvicorn server on a free loopback port: streaming over HTTP, and overload that answers 429s
(never 5xx, never a hang) while the server keeps serving."""

import json
import threading
import time

import httpx
import pytest
from serve_helpers import data_uri, encode, picture, running


@pytest.fixture(scope="module")
def base_url(models):
    with running(models, queue_size=2, max_batch_size=1, max_wait_ms=0, request_timeout_s=20) as url:
        yield url


def chat_request(seed: int, stream: bool = False) -> dict:
    parts = [
        {"type": "image_url", "image_url": {"url": data_uri(encode(picture(seed)))}},
        {"type": "text", "text": "describe the image in detail."},
    ]
    return {"messages": [{"role": "user", "content": parts}], "max_tokens": 64, "stream": stream,
            "temperature": 1.5, "seed": seed}  # fmt: skip


def test_streaming_over_http(base_url):
    request = chat_request(1)
    with httpx.Client(base_url=base_url, timeout=20) as http:
        whole = http.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]
        events = []
        with http.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole


def test_overload_answers_429_without_errors(base_url):
    n = 16
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    retry_after: list[str] = []

    def fire(seed: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            barrier.wait()
            response = http.post("/v1/chat/completions", json=chat_request(100 + seed))
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(response.headers.get("retry-after"))
                assert response.json()["error"]["type"] == "rate_limit_error"

    start = time.monotonic()
    threads = [threading.Thread(target=fire, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    assert len(statuses) == n and elapsed < 30
    assert statuses.count(429) >= 1 and statuses.count(200) >= 1
    assert set(statuses) <= {200, 429}, statuses
    assert all(value == "1" for value in retry_after)
    with httpx.Client(base_url=base_url, timeout=20) as http:
        assert http.post("/v1/chat/completions", json=chat_request(999)).status_code == 200
        metrics = http.get("/metrics").text
    assert 'route="/v1/chat/completions",method="POST",status="429"' in metrics


def active_streams(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith('polymodal_active_streams{model="tiny-assistant"}'):
            return float(line.split()[-1])
    raise AssertionError("no active_streams gauge")


def test_streams_are_capped_and_released(base_url):
    n = 8
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def stream(seed: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            barrier.wait()
            with http.stream("POST", "/v1/chat/completions", json=chat_request(200 + seed, stream=True)) as r:
                r.read()
                statuses.append(r.status_code)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(set(statuses)) == [200, 429], statuses  # two live streams at most (queue_size=2)
    with httpx.Client(base_url=base_url, timeout=20) as http:
        with http.stream("POST", "/v1/chat/completions", json=chat_request(300, stream=True)) as r:
            next(r.iter_lines())  # read the first event, then hang up mid-stream
        deadline = time.monotonic() + 10
        while active_streams(http) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert active_streams(http) == 0
