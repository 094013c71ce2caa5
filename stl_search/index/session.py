"""A query session: an index loaded once (boxes, searcher, source table, calibration, and the
model on first use) answering any number of queries.

Loading costs seconds (imports, FAISS, the model); a search after that costs milliseconds to a
fraction of a second. The ``search`` command, the web page (:mod:`stl_search.serve`) and the
benchmark all go through :class:`QuerySession`.

A query's answer (:class:`QueryResult`):

- ``hits``: the top-k boxes, best first, each with its similarity and, when the index is
  calibrated, its false-match rate (:mod:`stl_search.index.calibration`);
- ``sightings``: the matching boxes among the top ``candidates``, grouped per source into
  intervals (:mod:`stl_search.index.sightings`). A box matches when its similarity reaches the
  threshold: ``min_similarity`` if given, else the calibration's; with neither, every candidate;
- ``no_match``: True when a threshold is known and no box reaches it ("not in the gallery").

Filters (sources, cameras, time range) restrict the boxes searched; a filtered query is
searched exactly over the selected boxes, whatever the back end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from ..engine.predictor import PersonSearchPredictor
from .backends import load_searcher
from .calibration import Calibration
from .model import index_predictor
from .query import Hit, normalized_query, search_index
from .shards import GalleryIndex
from .sightings import Sighting, SourceTable, group_sightings

__all__ = ["QuerySession", "QueryResult", "Filters"]


@dataclass
class Filters:
    """Which boxes a query searches: source globs, camera names, a time range in seconds."""

    sources: Sequence[str] = ()
    cameras: Sequence[str] = ()
    time_range: Optional[Sequence[float]] = None


@dataclass
class QueryResult:
    """One query's answer (see the module docstring); ``seconds`` is the search alone."""

    hits: List[Hit]
    false_match_rate: Optional[np.ndarray]
    sightings: List[Sighting]
    threshold: Optional[float]
    threshold_source: str  # "calibration", "min-similarity" or "none"
    backend: str
    seconds: float
    meta: dict = field(default_factory=dict)

    @property
    def no_match(self) -> bool:
        return self.threshold is not None and not self.sightings

    def hit_rows(self) -> List[dict]:
        rows = []
        for rank, hit in enumerate(self.hits, 1):
            row = dict(rank=rank, **hit.as_dict())
            if self.threshold is not None:
                row["above_threshold"] = bool(hit.similarity >= self.threshold)
            if self.false_match_rate is not None:
                row["false_match_rate"] = float(self.false_match_rate[rank - 1])
            rows.append(row)
        return rows

    def as_dict(self) -> dict:
        return {
            "query": self.meta,
            "backend": self.backend,
            "search_seconds": round(self.seconds, 6),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "no_match": self.no_match,
            "sightings": [dict(rank=r, **s.as_dict()) for r, s in enumerate(self.sightings, 1)],
            "hits": self.hit_rows(),
        }


class QuerySession:
    """The index in ``folder``, loaded once.

    Args:
        backend: the searcher (default: the index's own).
        verify: check every shard's sha256 on load (slow on big indexes; on by default).
    """

    def __init__(self, folder: str, backend: Optional[str] = None, verify: bool = True):
        start = time.perf_counter()
        self.folder = folder
        self.gallery = GalleryIndex.open(folder, verify=verify)
        self.searcher = load_searcher(self.gallery, backend)
        self.table = SourceTable(self.gallery)
        self.calibration = Calibration.load(folder, self.gallery.manifest.get("weights_sha256"))
        self._predictor: Optional[PersonSearchPredictor] = None
        self.load_seconds = time.perf_counter() - start

    @property
    def backend(self) -> str:
        return self.searcher.name

    @property
    def predictor(self) -> PersonSearchPredictor:
        """The index's model (built on the first image query)."""
        if self._predictor is None:
            self._predictor = index_predictor(self.gallery.manifest)
        return self._predictor

    def embed(self, image, boxes) -> np.ndarray:
        """``(k, D)`` query embeddings of ``boxes`` (``(k, 4)`` XYXY) in one image: one forward."""
        return self.predictor.embed_query(image, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))

    def search(
        self,
        embedding: np.ndarray,
        topk: int = 10,
        candidates: int = 1000,
        max_gap: int = 2,
        min_similarity: Optional[float] = None,
        filters: Optional[Filters] = None,
        meta: Optional[dict] = None,
    ) -> QueryResult:
        """The answer to one query embedding (see the module docstring)."""
        if topk < 1 or candidates < 1:
            raise ValueError(f"--topk and --candidates must be >= 1, got {topk}, {candidates}")
        start = time.perf_counter()
        query = normalized_query(embedding, self.gallery.dim)  # checked before any work
        filters = filters or Filters()
        mask = self.table.select(filters.sources, filters.cameras, filters.time_range)
        searcher = (
            self.searcher if mask is None else _SubsetSearcher(self.gallery, np.flatnonzero(mask))
        )
        found = (
            search_index(self.gallery, searcher, query, max(topk, candidates))
            if (mask is None or mask.any())
            else []
        )
        ids = np.array([h.box_id for h in found], dtype=np.int64)
        sims = np.array([h.similarity for h in found], dtype=np.float64)
        if min_similarity is not None:
            threshold, why = float(min_similarity), "min-similarity"
        elif self.calibration is not None:
            threshold, why = self.calibration.threshold, "calibration"
        else:
            threshold, why = None, "none"
        matching = sims >= threshold if threshold is not None else np.ones(len(ids), bool)
        sightings = group_sightings(
            ids[matching], sims[matching], self.table, self.gallery, max_gap
        )
        hits = found[:topk]
        fmr = self.calibration.false_match_rate(sims[:topk]) if self.calibration else None
        return QueryResult(
            hits=hits,
            false_match_rate=fmr,
            sightings=sightings,
            threshold=threshold,
            threshold_source=why,
            backend=searcher.name,
            seconds=time.perf_counter() - start,
            meta=dict(meta or {}),
        )


class _SubsetSearcher:
    """Exact search over the boxes ``selected`` (global ids) of a gallery: a filtered query."""

    name = "exact (filtered)"

    def __init__(self, gallery: GalleryIndex, selected: np.ndarray):
        self.gallery, self.selected = gallery, selected

    def search(self, queries: np.ndarray, k: int):
        sims = queries @ self.gallery.rows(self.selected).T
        if k < sims.shape[1]:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(part, order, axis=1)
        else:
            top = np.argsort(-sims, axis=1, kind="stable")
        return np.take_along_axis(sims, top, axis=1), self.selected[top]
