"""The retrieval grid of an evaluation report: some queries, each beside its top-k hits.

One row per query (chosen evenly over the query list, so that reruns show the same ones): the query
person framed in blue, then the k most similar gallery detections of the headline protocol, framed
in green when the protocol counts them as the target and in red otherwise, each with its
similarity. Crops keep a margin of 10 % around the box and are resized to one cell size. An image
that cannot be read becomes a grey cell (evaluation never fails over a figure). Written atomically
as a PNG with OpenCV.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from stl_search.utils.images import read_image
from stl_search.utils.io import atomic_open

from .galleries import GalleryDetections
from .search_metrics import SearchResult

__all__ = ["draw_retrieval_grid", "grid_queries", "crop_cell"]

logger = logging.getLogger(__name__)

#: Frame colours (BGR): the query, a true hit, a false hit.
QUERY_COLOUR, TRUE_COLOUR, FALSE_COLOUR = (200, 120, 0), (0, 170, 0), (0, 0, 220)
_FRAME, _LABEL_HEIGHT, _GREY = 4, 16, 127


def grid_queries(num_queries: int, n: int) -> np.ndarray:
    """Indices of ``n`` queries spread evenly over ``num_queries`` (all of them when fewer)."""
    if n <= 0 or num_queries <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, num_queries - 1, min(n, num_queries)).round().astype(np.int64))


def crop_cell(
    image: Optional[np.ndarray],
    box: Sequence[float],
    colour: Tuple[int, int, int],
    label: str,
    size: Tuple[int, int],
) -> np.ndarray:
    """The crop of ``box`` in ``image`` (10 % margin) resized to ``size`` (height, width),
    framed in ``colour``, above ``label`` (one white strip per ``\\n``-separated line); a grey
    crop when ``image`` is None."""
    h, w = size
    if image is None:
        crop = np.full((h, w, 3), _GREY, dtype=np.uint8)
    else:
        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
        ih, iw = image.shape[:2]
        xa, ya = int(max(0, x1 - mx)), int(max(0, y1 - my))
        xb, yb = int(min(iw, np.ceil(x2 + mx))), int(min(ih, np.ceil(y2 + my)))
        patch = image[ya:yb, xa:xb] if xb > xa and yb > ya else image
        crop = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA)
    crop = cv2.copyMakeBorder(crop, *([_FRAME] * 4), cv2.BORDER_CONSTANT, value=colour)
    lines = label.split("\n")
    strip = np.full((_LABEL_HEIGHT * len(lines), crop.shape[1], 3), 255, dtype=np.uint8)
    for i, line in enumerate(lines):
        y = _LABEL_HEIGHT * (i + 1) - 4
        cv2.putText(strip, line, (2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return np.concatenate([crop, strip], axis=0)


def draw_retrieval_grid(
    path: str,
    result: SearchResult,
    gallery: GalleryDetections,
    query_dicts: Sequence[dict],
    gallery_dicts: Sequence[dict],
    *,
    num_queries: int = 8,
    topk: int = 5,
    cell_size: Tuple[int, int] = (128, 64),
) -> None:
    """Save the grid of ``num_queries`` queries x their ``topk`` hits (``result``'s ranked lists,
    at most its ``num_ranked``) as a PNG at ``path``.

    Args:
        result: the search result whose ranked lists are drawn (indices into ``gallery``).
        gallery: the detections ``result`` indexes; ``gallery_dicts``: their images, in the same
            order (``file_name``); ``query_dicts``: the queries of ``result`` in its order
            (``file_name``, ``query_box``).
        cell_size: (height, width) of each crop.
    """
    det_image = np.repeat(np.arange(gallery.num_images), np.diff(gallery.splits))
    cache: Dict[str, Optional[np.ndarray]] = {}

    def read(file_name: str) -> Optional[np.ndarray]:
        if file_name not in cache:
            try:
                cache[file_name] = read_image(file_name, "BGR")
            except (
                OSError
            ) as e:  # a missing or undecodable image: FileNotFoundError, ImageReadError
                cache[file_name] = None
                logger.warning("retrieval grid: %s (grey cell)", e)
        return cache[file_name]

    rows = []
    for q in grid_queries(len(query_dicts), num_queries):
        d = query_dicts[q]
        cells = [crop_cell(read(d["file_name"]), d["query_box"], QUERY_COLOUR, "query", cell_size)]
        for r in range(min(topk, result.ranked_dets.shape[1])):
            j = int(result.ranked_dets[q, r])
            if j < 0:
                cells.append(crop_cell(None, (0, 0, 0, 0), (255, 255, 255), "", cell_size))
                continue
            colour = TRUE_COLOUR if result.ranked_correct[q, r] else FALSE_COLOUR
            image = read(gallery_dicts[det_image[j]]["file_name"])
            label = f"{r + 1}: {float(result.ranked_scores[q, r]):.2f}"
            cells.append(crop_cell(image, gallery.boxes[j], colour, label, cell_size))
        rows.append(np.concatenate(cells, axis=1))
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    ok, encoded = cv2.imencode(".png", np.concatenate(rows, axis=0))
    if not ok:
        raise ValueError(f"cannot encode the retrieval grid for {path}")
    with atomic_open(path, "wb") as f:
        f.write(encoded.tobytes())
