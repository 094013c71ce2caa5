"""Querying a gallery index: a query embedding -> ranked :class:`Hit` s, written as JSON and CSV.

The similarity is the dot product of L2-normalised embeddings (the evaluator's); the searcher
(:mod:`stl_search.index.backends`) decides whether it is computed over every box or over an
approximate index's candidates.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import List, Sequence

import numpy as np

from ..utils.io import atomic_open, atomic_write_json
from .shards import GalleryIndex

__all__ = ["Hit", "search_index", "write_hits", "normalized_query", "format_hits"]


@dataclass
class Hit:
    """One detected person of the gallery and its similarity to the query.

    ``frame_index`` and ``timestamp`` (seconds) are -1 for an image file.
    """

    file_name: str
    box: np.ndarray  # x1, y1, x2, y2 in the image's own pixels
    detection_score: float
    similarity: float
    frame_index: int = -1
    timestamp: float = -1.0
    box_id: int = -1

    def as_dict(self) -> dict:
        d = asdict(self)
        d["box"] = [round(float(v), 2) for v in self.box]
        return d


def normalized_query(embedding: np.ndarray, dim: int, name: str = "query embedding") -> np.ndarray:
    """``embedding`` as a float32 ``(D,)`` unit vector; raises naming ``name`` on a wrong shape."""
    embedding = np.asarray(embedding, dtype=np.float32).ravel()
    if embedding.shape != (dim,) or not np.isfinite(embedding).all():
        raise ValueError(f"{name}: expected {dim} finite values, got shape {embedding.shape}")
    return embedding / max(float(np.linalg.norm(embedding)), 1e-12)


def search_index(gallery: GalleryIndex, searcher, query_embedding: np.ndarray, k: int) -> List[Hit]:
    """The top ``k`` boxes of ``gallery`` for one query embedding, best first; none when the
    gallery holds no box (nothing was detected), a normal answer.

    Raises:
        ValueError: ``k`` is not positive (for a gallery with boxes), or the embedding has the
            wrong size.
    """
    query = normalized_query(query_embedding, gallery.dim)
    if len(gallery) == 0:
        return []
    if int(k) < 1:
        raise ValueError(f"--topk must be a positive number of hits, got {k}")
    sims, ids = searcher.search(query[None], min(int(k), len(gallery)))
    hits = []
    for sim, i in zip(sims[0], ids[0]):
        if i < 0:
            continue
        hits.append(
            Hit(
                file_name=str(gallery.file_name[i]),
                box=gallery.boxes[i],
                detection_score=float(gallery.scores[i]),
                similarity=float(sim),
                frame_index=int(gallery.frame_index[i]),
                timestamp=float(gallery.timestamp[i]),
                box_id=int(i),
            )
        )
    return hits


def write_hits(hits: Sequence[Hit], json_path: str, csv_path: str, meta: dict = None) -> None:
    """The hits as JSON (``{"query": meta, "hits": [...]}``) and as CSV, one row per hit."""
    rows = [dict(rank=r, **h.as_dict()) for r, h in enumerate(hits, 1)]
    atomic_write_json({"query": meta or {}, "hits": rows}, json_path)
    text = io.StringIO()
    fields = ["rank", "similarity", "detection_score", "file_name", "frame_index", "timestamp"]
    writer = csv.writer(text)
    writer.writerow(fields + ["x1", "y1", "x2", "y2", "box_id"])
    for row in rows:
        writer.writerow([row[f] for f in fields] + row["box"] + [row["box_id"]])
    with atomic_open(csv_path, "w") as f:
        f.write(text.getvalue())


def format_hits(hits: Sequence[Hit]) -> str:
    """A table of the hits for the terminal: rank, similarity, detection score, box, source."""
    lines = [
        f"{'rank':>4}  {'similarity':>10}  {'det score':>9}  {'box (x1 y1 x2 y2)':<19}  source"
    ]
    for rank, hit in enumerate(hits, 1):
        box = " ".join(f"{v:.0f}" for v in hit.box)
        where = hit.file_name + (f" @ {hit.timestamp:.2f} s" if hit.frame_index >= 0 else "")
        lines.append(
            f"{rank:>4}  {hit.similarity:>10.4f}  {hit.detection_score:>9.3f}  {box:<19}  {where}"
        )
    return "\n".join(lines)
