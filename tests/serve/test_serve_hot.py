"""The short way to /v1/embeddings (serve.hot): what it dispatches, and that its answers are the ones
FastAPI's own route gives, errors included."""

import pytest
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from serve_helpers import data_uri, encode, picture
from starlette.requests import Request

from polymodal.serve import ServeConfig, create_app
from polymodal.serve import app as app_module
from polymodal.serve.hot import HotRoutes


async def echo(request: Request) -> JSONResponse:
    if request.query_params.get("fail") == "value":
        raise ValueError("a value error")
    if request.query_params.get("fail") == "bug":
        raise KeyError("a bug")
    return JSONResponse(
        {"hot": True, "route": request.scope["route"].path, "body": (await request.body()).decode()}
    )


async def fallback(scope, receive, send):
    await PlainTextResponse(f"fallback {scope['method']} {scope['path']}")(scope, receive, send)


async def on_value_error(request: Request, exc: ValueError) -> JSONResponse:
    return JSONResponse({"handled": str(exc)}, status_code=400)


def hot_client(root_path: str = "") -> TestClient:
    route = APIRoute("/hot", echo, methods=["POST"])
    app = HotRoutes(fallback, [route], {ValueError: on_value_error})
    return TestClient(app, root_path=root_path, raise_server_exceptions=True)


def test_hot_routes_take_their_method_and_path_and_pass_the_rest_on():
    client = hot_client()
    hot = client.post("/hot", content=b"payload")
    assert hot.json() == {"hot": True, "route": "/hot", "body": "payload"}
    assert client.get("/hot").text == "fallback GET /hot"
    assert client.post("/other").text == "fallback POST /other"
    assert client.post("/hot/").text == "fallback POST /hot/"


def test_hot_routes_match_below_a_root_path():
    assert hot_client(root_path="/api").post("/hot").json()["hot"] is True


def test_hot_route_errors_take_the_handlers_and_bugs_propagate():
    client = hot_client()
    handled = client.post("/hot?fail=value")
    assert handled.status_code == 400 and handled.json() == {"handled": "a value error"}
    with pytest.raises(KeyError):
        client.post("/hot?fail=bug")


def test_a_hot_route_must_take_the_request_alone():
    async def with_parameter(request: Request, limit: int) -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(ValueError, match="takes the Request alone"):
        HotRoutes(fallback, [APIRoute("/x", with_parameter, methods=["POST"])], {})


REQUESTS = [
    {"json": {"input": ["a red circle", "two blue squares"], "encoding_format": "base64"}},
    {"json": {"input": [data_uri(encode(picture(3)))], "modality": "image"}},
    {"json": {"input": []}},
    {"json": {"input": "x", "surprise": 1}},
    {"json": {"input": "x", "model": "nope"}},
    {"json": {"input": ["data:image/png;base64,AAAA"], "modality": "image"}},
    {"content": b"{not json", "headers": {"content-type": "application/json"}},
    {"content": b'{"input": "x"}', "headers": {"content-type": "text/plain"}},
    {"content": b"", "headers": {"content-type": "application/json"}},
]


def hot_routes_of(app) -> dict:
    """The routes of the HotRoutes middleware in ``app``'s built middleware stack ({} when none)."""
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, HotRoutes):
        layer = getattr(layer, "app", None)
    return layer.routes if layer is not None else {}


def test_the_hot_path_answers_as_fastapis_route(models, monkeypatch):
    config = ServeConfig(models=list(models))
    with TestClient(create_app(config, models), raise_server_exceptions=False) as hot:
        hot_answers = [hot.post("/v1/embeddings", **request) for request in REQUESTS]
        metrics = hot.get("/metrics").text
        assert set(hot_routes_of(hot.app)) == {("POST", "/v1/embeddings")}
    monkeypatch.setattr(app_module, "HOT_PATHS", ())
    with TestClient(create_app(config, models), raise_server_exceptions=False) as plain:
        plain_answers = [plain.post("/v1/embeddings", **request) for request in REQUESTS]
        assert hot_routes_of(plain.app) == {}
    for request, a, b in zip(REQUESTS, hot_answers, plain_answers, strict=True):
        assert (a.status_code, a.json()) == (b.status_code, b.json()), request
        assert a.headers["content-type"] == b.headers["content-type"]
    assert {a.status_code for a in hot_answers} == {200, 400, 404, 415, 422}
    assert 'polymodal_requests_total{route="/v1/embeddings",method="POST",status="200"} 2' in metrics


def test_a_bug_behind_the_hot_path_is_a_500_envelope(models, monkeypatch):
    from polymodal.serve import routes_openai

    async def broken(*args):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(routes_openai, "embed_texts_counted", broken)
    app = create_app(ServeConfig(models=list(models)), models)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/embeddings", json={"input": "x"})
        assert response.status_code == 500 and "secret" not in response.text
        assert response.json()["error"]["code"] == "internal_error"
        assert client.get("/health").status_code == 200
        assert 'route="/v1/embeddings",method="POST",status="500"' in client.get("/metrics").text
