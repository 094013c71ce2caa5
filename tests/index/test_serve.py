"""The search page: its HTTP API through Flask's test client (always), and the page itself in a
headless Chromium (where one is installed; skipped, saying so, where not)."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import cv2
import numpy as np
import pytest

flask = pytest.importorskip("flask", reason="Flask (requirements.txt) is not installed")

from stl_search.index.session import QuerySession  # noqa: E402
from stl_search.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def served(gallery_index):
    session = QuerySession(gallery_index)
    return session, create_app(session).test_client()


def test_api_answers_searches_and_refuses_other_files(served, tmp_path):
    session, client = served
    assert b"stl-search" in client.get("/").data
    info = client.get("/api/index").get_json()
    assert info["boxes"] == len(session.gallery) and info["backend"] == "exact"
    frames = client.get("/api/frames").get_json()["frames"]
    assert len(frames) == len(set(session.gallery.file_name.tolist())) == 6
    name = frames[0]["file"]
    picture = client.get("/api/frame", query_string={"file": name, "frame": -1})
    assert picture.status_code == 200 and picture.mimetype == "image/jpeg"
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.zeros((8, 8, 3), np.uint8))
    for path in (str(secret), "/etc/passwd", name + "/../" + name.split("/")[-1]):
        refused = client.get("/api/frame", query_string={"file": path, "frame": -1})
        assert (
            refused.status_code == 403 and "not one of the index's frames" in refused.json["error"]
        )
    assert client.get("/api/crop/0").mimetype == "image/jpeg"
    assert client.get(f"/api/crop/{len(session.gallery)}").status_code == 404

    box = [float(v) for v in session.gallery.boxes[session.gallery.file_name == name][0]]
    by_file = client.post("/api/search", json={"image": {"file": name, "frame": -1}, "box": box})
    assert by_file.status_code == 200, by_file.json
    answer = by_file.get_json()
    expected = session.search(session.embed(name, box)[0])
    assert [h["box_id"] for h in answer["hits"]] == [h.box_id for h in expected.hits]
    assert answer["timeline"].startswith("data:image/png;base64,")
    assert answer["sightings"] and answer["backend"] == "exact"

    ok, encoded = cv2.imencode(".png", cv2.imread(name))
    uploaded = client.post(
        "/api/upload", data={"image": (io.BytesIO(encoded.tobytes()), "mine.png")}
    ).get_json()
    by_upload = client.post(
        "/api/search",
        json={"image": {"upload": uploaded["token"]}, "box": box, "min_similarity": 1.01},
    ).get_json()
    assert by_upload["no_match"] and by_upload["hits"][0]["box_id"] == answer["hits"][0]["box_id"]

    garbage = client.post("/api/upload", data={"image": (io.BytesIO(b"not an image"), "x.png")})
    assert garbage.status_code == 400 and "x.png: not a readable image" in garbage.json["error"]
    bad_box = client.post("/api/search", json={"image": {"file": name, "frame": -1}, "box": [1]})
    assert bad_box.status_code == 400 and "box must be 4 numbers" in bad_box.json["error"]
    stale = client.post("/api/search", json={"image": {"upload": "nope"}, "box": box})
    assert stale.status_code == 400 and "unknown or expired upload token" in stale.json["error"]


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(
    _browser() is None, reason="no headless browser (apt-get install chromium) for the page test"
)
def test_page_searches_in_a_headless_browser(served):
    """``python -m stl_search.serve --index DIR --port P`` as a user runs it, and the page in
    Chromium: it loads the index info, pre-fills the query from the URL, searches, shows rows."""
    session, _ = served
    with socket.socket() as probe:  # a free port for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "stl_search.serve", "--index", session.folder, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/api/index", timeout=1).read()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.2)
        name = str(session.gallery.file_name[0])
        box = ",".join(f"{v:.1f}" for v in session.gallery.boxes[0])
        query = urllib.parse.urlencode({"file": name, "frame": -1, "box": box, "run": 1})
        browser = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        dom = subprocess.run(
            browser + ["--virtual-time-budget=30000", "--dump-dom", f"{base}/?{query}"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert f"{len(session.gallery)} boxes, back end exact" in dom
    assert "back end exact, search" in dom  # the status line of the search the page ran
    assert dom.count('class="sighting"') >= 1 and dom.count('class="hit"') == 10
    assert 'src="/api/crop/0"' in dom  # the query's own box is its best hit
