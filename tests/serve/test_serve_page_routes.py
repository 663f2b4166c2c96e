"""The web page's own routes: the gallery summary and thumbnails of indexed images (no browser needed)."""

import io

import pytest
from PIL import Image
from serve_helpers import error_of, picture

from polymodal.search import build_folder_index


@pytest.fixture(scope="module")
def small_gallery(clip, tmp_path_factory):
    """Four indexed images: 200x100, 48x48, 30x300, and one deleted after indexing."""
    folder = tmp_path_factory.mktemp("thumbs")
    sizes = [(200, 100), (48, 48), (30, 300), (40, 40)]
    for i, (w, h) in enumerate(sizes):
        picture(i, size=max(w, h)).resize((w, h)).save(folder / f"img{i}.png")
    out = tmp_path_factory.mktemp("thumbs-index") / "idx"
    build_folder_index(clip, folder, out)
    (folder / "img3.png").unlink()
    return out


def jpeg_size(response) -> tuple[int, int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    return image.size


def test_thumbnails_fit_the_box_and_are_cached(serve, small_gallery):
    with serve(index=str(small_gallery)) as c:
        info = c.get("/v1/gallery").json()
        assert info == {"object": "gallery", "count": 4, "model": "tiny-clip"}
        ids = {r["metadata"]["path"].rsplit("/", 1)[-1]: r["id"] for r in _all_hits(c)}
        assert jpeg_size(c.get(f"/v1/thumbnail?id={ids['img0.png']}")) == (160, 80)
        assert jpeg_size(c.get(f"/v1/thumbnail?id={ids['img1.png']}")) == (48, 48)  # never enlarged
        assert jpeg_size(c.get(f"/v1/thumbnail?id={ids['img2.png']}&size=64")) == (6, 64)
        again = c.get(f"/v1/thumbnail?id={ids['img0.png']}")
        assert jpeg_size(again) == (160, 80) and "max-age" in again.headers["cache-control"]
        assert 'route="/v1/thumbnail",method="GET",status="200"' in c.get("/metrics").text


def _all_hits(client) -> list[dict]:
    response = client.post("/v1/search", json={"query": "anything", "k": 10})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_thumbnail_refusals(serve, small_gallery):
    with serve(index=str(small_gallery)) as c:
        missing = {r["metadata"]["path"].rsplit("/", 1)[-1]: r["id"] for r in _all_hits(c)}["img3.png"]
        gone = c.get(f"/v1/thumbnail?id={missing}")
        assert gone.status_code == 404 and "missing on disk" in error_of(gone)["message"]
        unknown = c.get("/v1/thumbnail?id=4")
        assert unknown.status_code == 404 and "ids are 0..3" in error_of(unknown)["message"]
        for query in ("id=-1", "id=abc", "", "id=0&size=4", "id=0&size=5000"):
            assert c.get(f"/v1/thumbnail?{query}").status_code == 422, query
        assert c.get("/v1/thumbnail?id=../../etc/passwd").status_code == 422
    with serve(index=str(small_gallery), max_pixels=100 * 100) as c:
        big = c.get("/v1/thumbnail?id=0")
        assert big.status_code == 413 and "limit is 10000 pixels" in error_of(big)["message"]
    with serve(index=str(small_gallery), api_keys=["k1"]) as c:
        assert c.get("/v1/thumbnail?id=0").status_code == 401
        assert c.get("/v1/thumbnail?id=0", headers={"Authorization": "Bearer k1"}).status_code == 200
        assert c.get("/").status_code == 200  # the page itself is open; it sends the key it is given


def test_no_index_means_404(client):
    for path in ("/v1/gallery", "/v1/thumbnail?id=0"):
        response = client.get(path)
        assert response.status_code == 404 and error_of(response)["code"] == "no_index"
