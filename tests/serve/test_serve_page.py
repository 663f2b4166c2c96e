"""The web page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium) against a real uvicorn server: search with thumbnails, a dropped image classified and asked
about, and a streamed chat. Each step is checked in the DOM and in screenshots (right size, not blank,
changed by the results)."""

import base64
import io
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import data_uri, running

from polymodal.search import build_folder_index, open_index, search_index

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="needs chromium and chromedriver (apt chromium-driver)"
)
webdriver = pytest.importorskip("selenium.webdriver")
WAIT_S = 30  # generous: the CPU is shared with other work


@pytest.fixture(scope="module")
def gallery(clip, tmp_path_factory):
    from polymodal.demo import make_gallery

    folder = tmp_path_factory.mktemp("page-gallery")
    make_gallery(folder, 12)
    out = tmp_path_factory.mktemp("page-index") / "idx"
    build_folder_index(clip, folder, out)
    return folder, out


@pytest.fixture(scope="module")
def base_url(models, gallery):
    with running(models, index=str(gallery[1])) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(browser, script: str, *args):
    """Poll a JavaScript expression (``return ...``) until it is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S, poll_frequency=0.1).until(lambda d: d.execute_script(script, *args))


def open_page(browser, base_url: str) -> None:
    browser.get(base_url + "/")
    status = wait_until(browser, "return document.getElementById('status').textContent.startsWith('serving')"
                        " && document.getElementById('status').textContent")  # fmt: skip
    assert "tiny-clip" in status and "tiny-assistant" in status


def screenshot(browser, path) -> np.ndarray:
    """Save a screenshot to ``path``; check it is the viewport's size and not blank; return its pixels."""
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 0
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    width, height, ratio = browser.execute_script(
        "return [window.innerWidth, window.innerHeight, window.devicePixelRatio]"
    )
    assert pixels.shape == (round(height * ratio), round(width * ratio), 3)
    assert pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not a blank page
    return pixels


def changed(before: np.ndarray, after: np.ndarray) -> float:
    """The fraction of pixels that differ between two screenshots."""
    return float((np.abs(before - after).sum(axis=2) > 30).mean())


def drop_file(browser, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the page's drop zone, as a user dragging it from the desktop would."""
    browser.execute_script(
        """
        const [b64, name, type] = arguments;
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type }));
        const zone = document.getElementById("drop");
        for (const kind of ["dragenter", "dragover", "drop"]) {
          zone.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }
        """,
        base64.b64encode(data).decode(),
        name,
        mime,
    )


def texts(browser, selector: str) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)", selector
    )


def test_search_shows_thumbnails(browser, base_url, clip, gallery, tmp_path):
    open_page(browser, base_url)
    wait_until(browser, "return document.getElementById('search-status').textContent.includes('12 images')")
    before = screenshot(browser, tmp_path / "before-search.png")
    browser.find_element("id", "query").send_keys("a red circle\n")
    wait_until(
        browser,
        "const imgs = document.querySelectorAll('#results img');"
        "return imgs.length === 8 && [...imgs].every((i) => i.dataset.state === 'loaded' && i.naturalWidth > 0)",
    )
    after = screenshot(browser, tmp_path / "after-search.png")
    expected = search_index(clip, open_index(gallery[1]), "a red circle", k=8)
    captions = texts(browser, "#results figcaption")
    names = [c.split(" ")[1] for c in captions]
    assert names == [h.metadata["path"].rsplit("/", 1)[-1] for h in expected]
    assert captions[0] == f"1. {names[0]} {expected[0].score:.3f}"
    assert "8 results" in browser.find_element("id", "search-status").text
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('#results img')].map(i => i.naturalWidth)"
    )
    assert sizes == [64] * 8  # the 64 px gallery images, as served by /v1/thumbnail
    assert changed(before, after) > 0.01
    box = browser.find_element("id", "results").rect
    region = after[
        int(box["y"]) : int(box["y"] + box["height"]), int(box["x"]) : int(box["x"] + box["width"])
    ]
    assert region.size and region.std() > 20  # thumbnails are drawn, not empty frames


def test_dropped_image_is_classified_and_answered(browser, base_url, clip, assistant, gallery, tmp_path):
    open_page(browser, base_url)
    image = (gallery[0] / "scene_0001.png").read_bytes()
    before = screenshot(browser, tmp_path / "before-drop.png")
    drop_file(browser, image, "scene.png", "image/png")
    wait_until(
        browser, "const p = document.getElementById('preview'); return !p.hidden && p.naturalWidth > 0"
    )
    labels = ["red", "green", "blue", "yellow", "purple"]
    field = browser.find_element("id", "labels")
    field.clear()
    field.send_keys(", ".join(labels) + "\n")
    top = wait_until(browser, "return document.getElementById('classify-result').dataset.top")
    expected = clip.classify([image], labels)[0]
    ranked = sorted(expected, key=expected.get, reverse=True)
    assert top == ranked[0]
    assert [t.split(" ")[0] for t in texts(browser, "#classify-result li")] == ranked
    browser.find_element("id", "question").send_keys("how many shapes are there?\n")
    answer = wait_until(
        browser,
        "const a = document.getElementById('answer').textContent; return a && a !== 'thinking…' && a",
    )
    assert answer == assistant.ask(image, "how many shapes are there?")
    after = screenshot(browser, tmp_path / "after-drop.png")
    assert changed(before, after) > 0.01
    field.clear()
    field.send_keys("only-one\n")  # the server refuses one label: the page shows its message
    wait_until(browser, "return document.getElementById('answer').classList.contains('error')")
    assert "labels" in browser.find_element("id", "answer").text


def test_chat_streams_replies(browser, base_url, gallery, tmp_path):
    open_page(browser, base_url)
    image = (gallery[0] / "scene_0002.png").read_bytes()
    drop_file(browser, image, "scene.png", "image/png")
    wait_until(browser, "return !document.getElementById('preview').hidden")
    before = screenshot(browser, tmp_path / "before-chat.png")
    browser.find_element("id", "attach").click()
    browser.find_element("id", "prompt").send_keys("describe the image.\n")
    done = "return [...document.querySelectorAll('.msg.assistant')].filter((m) => m.dataset.state === 'done').length"
    wait_until(browser, done + " === 1")
    bubble = browser.find_element("css selector", ".msg.assistant")
    content = [
        {"type": "image_url", "image_url": {"url": data_uri(image)}},
        {"type": "text", "text": "describe the image."},
    ]
    history = [{"role": "user", "content": content}]
    whole = complete(base_url, history)
    assert bubble.text == whole.strip() and whole
    assert int(bubble.get_attribute("data-chunks")) > 1  # the reply arrived in pieces
    after = screenshot(browser, tmp_path / "after-chat.png")
    assert changed(before, after) > 0.005
    browser.find_element("id", "attach").click()
    browser.find_element("id", "prompt").send_keys("and what colour is it?\n")  # a second turn
    wait_until(browser, done + " === 2")
    history += [
        {"role": "assistant", "content": whole},
        {"role": "user", "content": "and what colour is it?"},
    ]
    replies = browser.find_elements("css selector", ".msg.assistant")
    assert replies[1].text == complete(base_url, history).strip()
    assert texts(browser, ".msg.user") == ["[image] describe the image.", "and what colour is it?"]


def complete(base_url: str, messages: list[dict]) -> str:
    """The server's non-streamed reply to ``messages`` (greedy, as the page asks)."""
    body = {"messages": messages, "max_tokens": 64}
    response = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=WAIT_S)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_screenshot_check_catches_a_blank_page(browser, tmp_path):
    browser.get("data:text/html,<body style='background:white'></body>")
    with pytest.raises(AssertionError):
        screenshot(browser, tmp_path / "blank.png")
    assert Image.open(io.BytesIO(browser.get_screenshot_as_png())).getextrema() == ((255, 255),) * 3
