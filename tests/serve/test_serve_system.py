"""Probes, /v1/models, /metrics, API keys, the web-page hook, config loading and the CLI command."""

import json
import re

import pytest
from fastapi.testclient import TestClient
from serve_helpers import error_of
from typer.testing import CliRunner

from polymodal.config import ConfigError
from polymodal.serve import ServeConfig, create_app

SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$')


def test_health_ready_and_models(models):
    app = create_app(ServeConfig(models=list(models)), models)
    idle = TestClient(app)  # lifespan not run: loaded but not serving
    assert idle.get("/health").json() == {"status": "ok"}
    assert idle.get("/ready").status_code == 503
    with TestClient(app) as client:
        assert client.get("/ready").json() == {"status": "ready", "models": ["tiny-clip", "tiny-assistant"]}
        listed = client.get("/v1/models").json()
        assert listed["object"] == "list"
        assert {m["id"]: m["capabilities"] for m in listed["data"]} == {
            "tiny-clip": ["embed_text", "embed_image", "classify"],
            "tiny-assistant": ["chat", "chat_image"],
        }
        assert client.get("/v1/models/tiny-clip").json()["id"] == "tiny-clip"
        assert client.get("/v1/models/nope").status_code == 404
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/app.js"' in page.text
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/docs").status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/embeddings", "/v1/chat/completions", "/v1/audio/transcriptions", "/v1/classify"} <= set(
            paths
        )
        # the embeddings route reads its own body (deps.json_body); the docs still show its fields
        body = paths["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert {"input", "modality", "encoding_format"} <= set(body["properties"])


def test_metrics_exposition(client):
    client.post("/v1/embeddings", json={"input": ["metrics one", "metrics two"]})
    client.post("/v1/embeddings", json={"input": []})
    client.get("/no/such/path/123")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.strip().splitlines()
    samples = [line for line in lines if not line.startswith("#")]
    assert all(SAMPLE.match(line) for line in samples), [s for s in samples if not SAMPLE.match(s)]
    text = response.text
    assert re.search(
        r'polymodal_requests_total\{route="/v1/embeddings",method="POST",status="200"\} [1-9]', text
    )
    assert 'route="/v1/embeddings",method="POST",status="400"' in text
    assert 'route="other",method="GET",status="404"' in text and "/no/such" not in text
    assert 'polymodal_batch_size_bucket{model="tiny-clip",op="embed_text",le="+Inf"}' in text
    assert 'polymodal_queue_depth{model="tiny-assistant",op="chat"} 0' in text
    assert "polymodal_ready 1" in text


def test_api_keys(serve):
    with serve(api_keys=["key-one", "key-two"]) as c:
        missing = c.post("/v1/embeddings", json={"input": "x"})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "missing API key" in error_of(missing)["message"]
        wrong = c.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer key-three"})
        assert wrong.status_code == 401 and "invalid API key" in error_of(wrong)["message"]
        assert c.get("/v1/models", headers={"Authorization": "Basic key-one"}).status_code == 401
        for key in ("key-one", "key-two"):
            ok = c.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200
        for open_path in ("/health", "/ready", "/metrics", "/openapi.json"):
            assert c.get(open_path).status_code == 200
        assert 'status="401"' in c.get("/metrics").text
        schema = c.get("/openapi.json").json()  # /docs offers an Authorize button for the keys
        assert schema["components"]["securitySchemes"]["apiKey"] == {
            "type": "http", "scheme": "bearer", "description": "one of the server's API keys",
        }  # fmt: skip
        assert schema["paths"]["/v1/embeddings"]["post"]["security"] == [{"apiKey": []}]
        assert "security" not in schema["paths"]["/health"]["get"]


def test_openapi_declares_no_key_when_none_is_configured(client):
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert "security" not in schema["paths"]["/v1/embeddings"]["post"]


def test_config_loads_strictly(tmp_path):
    good = tmp_path / "serve.json"
    good.write_text(json.dumps({"models": ["tiny-clip"], "port": 9000, "max_wait_ms": 2}))
    config = ServeConfig.from_json(good, port=9001)
    assert config.port == 9001 and config.max_wait_ms == 2.0 and config.models == ["tiny-clip"]
    for bad, words in [
        ({"modles": ["tiny-clip"]}, "unknown key 'modles'"),
        ({"port": "80"}, "expected int"),
        ({"queue_size": 0}, "queue_size must be > 0"),
        ({"models": []}, "empty"),
        ({"models": ["tiny-clip", "tiny-clip"]}, "duplicate"),
        ({"log_level": "loud"}, "log_level"),
    ]:
        good.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=words):
            ServeConfig.from_json(good)


def test_serve_command_fails_cleanly(tmp_path):
    import polymodal.cli_serve  # noqa: F401  (registers the command until cli.py imports it)
    from polymodal.cli import app

    bad = tmp_path / "serve.json"
    bad.write_text(json.dumps({"max_batch_size": -1}))
    result = CliRunner().invoke(app, ["serve", "--config", str(bad)])
    assert result.exit_code == 2 and "max_batch_size" in result.output
    missing = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "no-model-here")])
    assert missing.exit_code == 2 and "error:" in missing.output


def test_unexpected_errors_are_500_without_internals(models, caplog):
    app = create_app(ServeConfig(models=list(models)), models)

    @app.get("/explode")
    async def explode():
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/explode")
        assert response.status_code == 500
        error = error_of(response)
        assert error["type"] == "server_error" and "secret" not in response.text
        assert re.search(r"id [0-9a-f]{12}", error["message"])
        assert client.get("/health").status_code == 200


def test_web_page_hook_serves_a_static_folder(tmp_path):
    from fastapi import FastAPI

    from polymodal.serve.errors import install_error_handlers
    from polymodal.serve.routes_system import mount_web_page

    (tmp_path / "index.html").write_text("<h1>polymodal</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app = FastAPI()
    mount_web_page(app, tmp_path)
    client = TestClient(app)
    assert client.get("/").text == "<h1>polymodal</h1>"
    assert client.get("/static/app.js").text == "console.log(1)"
    bare = FastAPI()
    install_error_handlers(bare)
    mount_web_page(bare, tmp_path / "no-page-here")
    page = TestClient(bare).get("/")
    assert page.status_code == 404 and "/docs" in error_of(page)["message"]


def test_a_server_process_that_cannot_start_is_reported_at_once(tmp_path):
    from polymodal.serve.process import serve_in_process

    settings = {"models": [str(tmp_path / "no-such-model")], "log_level": "error"}
    with pytest.raises(RuntimeError, match="exited with code"), serve_in_process(settings):
        pass
