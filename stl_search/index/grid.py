"""The result picture of a query: a grid of enlarged crops, readable at a glance.

The query's crop comes first (blue frame), then one cell per sighting (its best box) or, when
there is no sighting, per top hit. Each cell is the crop (10 % margin, the evaluation's retrieval
grid cell: :func:`stl_search.evaluation.retrieval_grid.crop_cell`), its rank and similarity
(and false-match rate when the index is calibrated), its source and its time or frame, and below
it the whole frame as a thumbnail with the box drawn in. A frame is green when the cell is
marked right, red when marked wrong (``marks``, e.g. the demo's ground truth), else green above
the threshold and grey below it. At most ``per_row`` cells per row.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import cv2
import numpy as np

from ..evaluation.retrieval_grid import FALSE_COLOUR, QUERY_COLOUR, TRUE_COLOUR, crop_cell
from ..utils.io import atomic_open
from .sources import load_record

__all__ = ["draw_result_grid", "save_crops", "result_cells"]

_BELOW_COLOUR = (150, 150, 150)
_CELL = (192, 96)  # crop height, width


def _pixels(file_name: str, frame_index: int) -> Optional[np.ndarray]:
    record = {"file_name": file_name, "frame_index": int(frame_index), "timestamp": -1.0}
    try:
        return load_record(record, "BGR")["image"]
    except (OSError, ValueError):
        return None  # a moved or unreadable source becomes a grey cell, as in evaluation grids


def _thumbnail(image: Optional[np.ndarray], box, colour, width: int) -> np.ndarray:
    if image is None:
        return np.full((width // 2, width, 3), 127, np.uint8)
    canvas = image.copy()
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, max(2, image.shape[1] // 200))
    height = max(1, int(round(image.shape[0] * width / image.shape[1])))
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)


def _stack(crop: np.ndarray, thumb: np.ndarray) -> np.ndarray:
    pad = crop.shape[1] - thumb.shape[1]
    thumb = np.pad(thumb, ((2, 2), (pad // 2, pad - pad // 2), (0, 0)), constant_values=255)
    return np.concatenate([crop, thumb], axis=0)


def _where(file_name: str, frame_index: int, timestamp: float) -> List[str]:
    name = os.path.basename(file_name)
    name = name if len(name) <= 16 else name[:7] + ".." + name[-7:]
    return [name, f"{timestamp:.1f} s fr {frame_index}" if frame_index >= 0 else "image"]


def result_cells(
    result, marks: Optional[Sequence[bool]] = None, hits_only: bool = False
) -> List[dict]:
    """The cells of ``result``: per sighting (per hit when there is none, or with
    ``hits_only``) its file, frame, box, label lines and frame colour."""
    cells = []
    if result.sightings and not hits_only:
        for rank, s in enumerate(result.sightings, 1):
            label = [f"#{rank} {s.best_similarity:.3f}"]
            label += _where(s.best_file, s.best_frame_index, s.best_timestamp)
            span = f"{s.end - s.start:.1f} s" if s.kind == "video" else f"{s.num_frames} img"
            label.append(f"{s.num_frames} fr, {span}" if s.kind == "video" else span)
            cells.append(
                dict(
                    file=s.best_file,
                    frame=s.best_frame_index,
                    box=s.best_box,
                    sim=s.best_similarity,
                    label=label,
                )
            )
    else:
        for rank, (hit, row) in enumerate(zip(result.hits, result.hit_rows()), 1):
            label = [f"#{rank} {hit.similarity:.3f}"]
            if "false_match_rate" in row:
                label[0] += f" FMR {row['false_match_rate']:.0e}"
            label += _where(hit.file_name, hit.frame_index, hit.timestamp)
            cells.append(
                dict(file=hit.file_name, frame=hit.frame_index, box=hit.box, sim=hit.similarity)
            )
            cells[-1]["label"] = label
    for i, cell in enumerate(cells):
        if marks is not None and i < len(marks):
            cell["colour"] = TRUE_COLOUR if marks[i] else FALSE_COLOUR
        elif result.threshold is None or cell["sim"] >= result.threshold:
            cell["colour"] = TRUE_COLOUR
        else:
            cell["colour"] = _BELOW_COLOUR
            cell["label"].append("below threshold")
    return cells


def draw_result_grid(
    result,
    query_image: str,
    query_box: Sequence[float],
    path: str,
    marks: Optional[Sequence[bool]] = None,
    hits_only: bool = False,
    limit: int = 10,
    per_row: int = 6,
) -> None:
    """Save the grid of the query and its first ``limit`` cells as an image at ``path``
    (``marks``: per cell, right or wrong; ``hits_only``: the hits even when there are
    sightings)."""
    h, w = _CELL
    query_pixels = _pixels(query_image, -1)
    tiles = [
        _stack(
            crop_cell(
                query_pixels,
                query_box,
                QUERY_COLOUR,
                "query\n" + _where(query_image, -1, -1)[0] + "\n\n",
                (h, w),
            ),
            _thumbnail(query_pixels, query_box, QUERY_COLOUR, w + 8),
        )
    ]
    for cell in result_cells(result, marks, hits_only)[:limit]:
        pixels = _pixels(cell["file"], cell["frame"])
        label = "\n".join((cell["label"] + ["", "", "", ""])[:5])
        crop = crop_cell(pixels, cell["box"], cell["colour"], label, (h, w))
        tiles.append(_stack(crop, _thumbnail(pixels, cell["box"], cell["colour"], w + 8)))
    if not result.sightings and not result.hits:
        tiles.append(crop_cell(None, (0, 0, 1, 1), _BELOW_COLOUR, "no hit", (h, w)))
    height = max(t.shape[0] for t in tiles)
    tiles = [
        np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles
    ]
    rows = [np.concatenate(tiles[i : i + per_row], axis=1) for i in range(0, len(tiles), per_row)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", np.concatenate(rows, axis=0))
    if not ok:
        raise ValueError(f"cannot encode the result grid for {path}")
    with atomic_open(path, "wb") as f:
        f.write(encoded.tobytes())


def save_crops(result, folder: str, tag: str) -> List[str]:
    """Each sighting's best crop (or each hit's, without sightings) as ``TAG_rankN.png`` in
    ``folder`` (created); returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for rank, cell in enumerate(result_cells(result), 1):
        pixels = _pixels(cell["file"], cell["frame"])
        if pixels is None:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in cell["box"])
        crop = pixels[max(y1, 0) : max(y2, 1), max(x1, 0) : max(x2, 1)]
        if crop.size == 0:
            continue
        path = os.path.join(folder, f"{tag}_rank{rank}.png")
        ok, encoded = cv2.imencode(".png", crop)
        with atomic_open(path, "wb") as f:
            f.write(encoded.tobytes())
        paths.append(path)
    return paths
