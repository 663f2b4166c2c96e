"""Image URLs: refused by default; with an allowlist, private addresses and redirects off the list are
refused, and allowed fetches are size-capped (a local HTTP server stands in for a remote host)."""

import http.server
import threading

import numpy as np
import pytest
from serve_helpers import encode, error_of, picture

from polymodal.serve.fetch import host_allowed, is_forbidden_address

IMAGE = encode(picture(21, size=16))


class Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    Handler.routes = {
        "/img.png": (200, {"Content-Type": "image/png"}, IMAGE),
        "/to-same": (302, {"Location": f"http://127.0.0.1:{port}/img.png"}, b""),
        "/to-other-host": (302, {"Location": f"http://localhost:{port}/img.png"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/big.png": (200, {"Content-Type": "image/png"}, b"\x89PNG" + b"\x00" * 6000),
        "/text": (200, {"Content-Type": "text/plain"}, b"hello"),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def embed_url(client, url):
    return client.post("/v1/embeddings", json={"input": [url], "modality": "image"})


def test_address_and_host_rules():
    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "0.0.0.0", "224.0.0.1", "::1", "fe80::1%eth0", "fc00::1", "::ffff:127.0.0.1", "ff02::1"):  # fmt: skip
        assert is_forbidden_address(address), address
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert not is_forbidden_address(address), address
    allow = ("example.com", "*.cdn.example.org")
    assert host_allowed("Example.COM.", allow) and host_allowed("a.b.cdn.example.org", allow)
    assert not host_allowed("cdn.example.org", allow) and not host_allowed("evil-example.com", allow)
    assert not host_allowed("example.com.evil.net", allow)


def test_urls_refused_without_allowlist_and_for_private_hosts(serve, origin):
    with serve() as c:
        response = embed_url(c, f"{origin}/img.png")
        assert response.status_code == 400 and "not fetched" in error_of(response)["message"]
    with serve(url_allowlist=["127.0.0.1"]) as c:
        response = embed_url(c, f"{origin}/img.png")
        assert response.status_code == 400 and "private or local address" in error_of(response)["message"]
    with serve(url_allowlist=["example.com"]) as c:
        response = embed_url(c, f"{origin}/img.png")
        assert (
            response.status_code == 400
            and "not on this server's url_allowlist" in error_of(response)["message"]
        )
        for url in ("ftp://example.com/a.png", "http://user:pw@example.com/a.png", "file:///etc/passwd"):
            assert embed_url(c, url).status_code == 400, url


def test_allowed_fetches_follow_checked_redirects_only(serve, origin, clip):
    with serve(url_allowlist=["127.0.0.1"], url_allow_private=True, max_body_bytes=4000) as c:
        fetched = embed_url(c, f"{origin}/img.png")
        assert fetched.status_code == 200, fetched.text
        expected = clip.embed_image([IMAGE])[0]
        assert np.allclose(fetched.json()["data"][0]["embedding"], expected, atol=1e-5)
        assert embed_url(c, f"{origin}/to-same").status_code == 200
        hop = embed_url(c, f"{origin}/to-other-host")
        assert hop.status_code == 400 and "'localhost' is not on" in error_of(hop)["message"]
        assert "redirected more than" in error_of(embed_url(c, f"{origin}/loop"))["message"]
        assert embed_url(c, f"{origin}/big.png").status_code == 413
        assert embed_url(c, f"{origin}/missing.png").status_code == 400
        assert embed_url(c, f"{origin}/text").status_code == 415
        chat_part = {"type": "image_url", "image_url": {"url": f"{origin}/img.png"}}
        chat = c.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": [chat_part]}], "max_tokens": 4},
        )
        assert chat.status_code == 200, chat.text
