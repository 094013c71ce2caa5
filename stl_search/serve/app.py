"""The local search page: a Flask app over one :class:`~stl_search.index.session.QuerySession`.

Routes (JSON unless said otherwise):

- ``GET /``: the page (:mod:`stl_search.serve.page`);
- ``GET /api/index``: box count, back end, threshold, sources and cameras;
- ``GET /api/frames``: the indexed images and sampled video frames a query can be drawn on;
- ``GET /api/frame?file=F&frame=N``: that frame as a JPEG, **only** when ``(F, N)`` is one of
  the index's own frames (anything else: 403), so the page cannot read other files;
- ``GET /api/crop/<box_id>``: a gallery box's crop (JPEG);
- ``POST /api/upload``: an image file (multipart ``image``), decoded in memory (never written,
  never executed); answers a token naming it for the searches of this server's life;
- ``POST /api/search``: ``{"image": {"upload": TOKEN} | {"file": F, "frame": N}, "box": [x1,
  y1, x2, y2], "topk", "min_similarity", "max_gap", "cameras", "sources", "time_range"}`` ->
  the query's result (as the ``search`` command's JSON) plus ``timeline`` (a PNG data URL).

One lock serialises the model and the searcher (the development server runs a thread per
request). No shell, no pickle: only file names the index lists are opened.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections import OrderedDict
from typing import Dict, Tuple

import cv2
import numpy as np
from flask import Flask, abort, jsonify, request

from ..index.session import Filters, QuerySession
from ..index.sources import load_record
from ..index.timeline import timeline_png
from .page import PAGE

__all__ = ["create_app"]

MAX_UPLOADS = 32  # kept in memory, oldest dropped first


def _jpeg(image: np.ndarray) -> Tuple[bytes, int, Dict[str, str]]:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        abort(500, "cannot encode the image")
    return encoded.tobytes(), 200, {"Content-Type": "image/jpeg"}


def create_app(session: QuerySession) -> Flask:
    """The page's app over ``session`` (loaded once, kept for the server's life)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024
    lock = threading.Lock()
    uploads: "OrderedDict[str, np.ndarray]" = OrderedDict()
    gallery, table = session.gallery, session.table
    frames = sorted(
        {(str(f), int(i)) for f, i in zip(gallery.file_name.tolist(), gallery.frame_index)}
    )
    known = set(frames)

    def pixels(file_name: str, frame: int) -> np.ndarray:
        if (file_name, frame) not in known:
            abort(403, f"{file_name} frame {frame} is not one of the index's frames")
        try:
            return load_record({"file_name": file_name, "frame_index": frame}, "BGR")["image"]
        except (OSError, ValueError) as e:
            abort(404, str(e))

    @app.get("/")
    def page():
        return PAGE, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/api/index")
    def index_info():
        cal = session.calibration
        return jsonify(
            boxes=len(gallery),
            backend=session.backend,
            threshold=cal.threshold if cal else None,
            target_fpr=cal.target_fpr if cal else None,
            sources=sorted({n.split("#")[0] for n in table.names}),
            cameras=sorted(set(table.cameras)),
        )

    @app.get("/api/frames")
    def frame_list():
        return jsonify(frames=[{"file": f, "frame": i} for f, i in frames])

    @app.get("/api/frame")
    def frame():
        try:
            frame_index = int(request.args.get("frame", "-1"))
        except ValueError:
            abort(400, "frame must be an integer")
        return _jpeg(pixels(request.args.get("file", ""), frame_index))

    @app.get("/api/crop/<int:box_id>")
    def crop(box_id: int):
        if not 0 <= box_id < len(gallery):
            abort(404, f"no box {box_id}")
        image = pixels(str(gallery.file_name[box_id]), int(gallery.frame_index[box_id]))
        x1, y1, x2, y2 = (int(round(float(v))) for v in gallery.boxes[box_id])
        patch = image[max(y1, 0) : max(y2, 1), max(x1, 0) : max(x2, 1)]
        return _jpeg(patch if patch.size else image)

    @app.post("/api/upload")
    def upload():
        data = request.files.get("image")
        if data is None:
            abort(400, "no file field 'image'")
        image = cv2.imdecode(np.frombuffer(data.read(), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            abort(400, f"{data.filename}: not a readable image")
        token = secrets.token_hex(8)
        with lock:
            uploads[token] = image
            while len(uploads) > MAX_UPLOADS:
                uploads.popitem(last=False)
        return jsonify(token=token, width=image.shape[1], height=image.shape[0])

    @app.post("/api/search")
    def search():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, "expected a JSON object")
        image_ref = body.get("image") or {}
        if "upload" in image_ref:
            image = uploads.get(str(image_ref["upload"]))
            if image is None:
                abort(400, "unknown or expired upload token")
            meta = {"image": "upload"}
        else:
            name, frame_index = str(image_ref.get("file", "")), int(image_ref.get("frame", -1))
            image = pixels(name, frame_index)
            meta = {"image": name, "frame": frame_index}
        try:
            box = [float(v) for v in body.get("box", [])]
            if len(box) != 4:
                raise ValueError("box must be 4 numbers x1 y1 x2 y2")
            time_range = body.get("time_range")
            filters = Filters(
                sources=[str(s) for s in body.get("sources") or []],
                cameras=[str(c) for c in body.get("cameras") or []],
                time_range=[float(t) for t in time_range] if time_range else None,
            )
            minimum = body.get("min_similarity")
            with lock:
                embedding = session.embed(image, box)[0]
                result = session.search(
                    embedding,
                    topk=int(body.get("topk", 10)),
                    max_gap=int(body.get("max_gap", 2)),
                    min_similarity=None if minimum in (None, "") else float(minimum),
                    filters=filters,
                    meta=dict(meta, box=box),
                )
        except (TypeError, ValueError) as e:
            abort(400, str(e))
        answer = result.as_dict()
        for s in answer["sightings"]:
            s.pop("box_ids")  # may be long; the best box is enough for the page
        png = timeline_png(result.sightings, f"{len(result.sightings)} sightings", result.threshold)
        answer["timeline"] = "data:image/png;base64," + base64.b64encode(png).decode()
        return jsonify(answer)

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def error(e):
        return jsonify(error=e.description), e.code

    return app
