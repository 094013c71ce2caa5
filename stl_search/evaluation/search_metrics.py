"""Search metrics of the person-search protocol (PRW, CUHK-SYSU) as pure, vectorised NumPy.

The published numbers of the SeqNet family come from ``eval_func.py`` of SeqNet (a port of the
2017 OIM evaluation). This package reproduces its numbers (``eval_detection``: :mod:`.detection`;
``eval_search_cuhk`` / ``eval_search_prw``: here) and its quirks, without its per-image Python
loops, and gives defined values where it crashes. No Detectron2 here: the arrays are the whole
interface. The protocol is described in ``../../docs/protocol.md``.

Array conventions (every function of :mod:`.detection`, :mod:`.galleries` and this module):
    * Boxes are ``XYXY`` absolute pixels, ``(n, 4)`` float.
    * Per-image variable-length data is *CSR*: a flat array plus ``splits`` of length
      ``num_images + 1``; the rows of image ``i`` are ``splits[i]:splits[i + 1]``.
    * Embeddings must already be L2-normalised: similarity is their dot product (cosine).

Protocol (SeqNet's ``eval_func.py``):
    * detections with score ``>= score_thresh`` (0.5) are kept, for search and detection alike;
    * search: per query, per gallery image, only the highest-similarity detection whose IoU with
      the target's box is ``>= min(0.5, w*h / ((w + 10) * (h + 10)))`` is a true positive;
      AP = scikit-learn's ``average_precision_score`` of the ranked detections (ties grouped)
      times recall = found / gallery listings that contain the target; top-k over detections;
    * detection: SeqNet's one-to-one matching at IoU 0.5 (see :func:`.detection_metrics`).

Tie-breaking (documented because the reference leaves it to NumPy's unstable sort): AP groups tied
scores, so it does not depend on it. Where an order is needed (which of two tied detections in one
image is the true positive, top-k, the ranked lists) ties go to the detection that comes first in
the gallery arrays (image order, then detection order).

Dependencies: NumPy; SciPy only for CBGM's assignment problem. The scoring lives in
:mod:`.search_scoring` (strategies) and :mod:`.search_kernels` (kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .galleries import CBGMContext, GalleryDetections, QueryGalleries
from .search_scoring import (
    STRATEGIES,
    Candidates,
    KeptGallery,
    ScoreTable,
    cbgm_nodes,
    reid_iou_threshold,
)

__all__ = ["PAIRS_FRACTION", "SearchResult", "reid_iou_threshold", "search_metrics"]

#: "auto" strategy of :func:`search_metrics`: compute only each query's own gallery ("pairs") when
#: the protocols need less than this fraction of the query x detection products, else one dense
#: product per chunk of queries ("matmul"). A pair product runs at a few times lower throughput
#: than a large matrix product (small per-image products, single-threaded), hence 0.2.
PAIRS_FRACTION = 0.2


@dataclass
class SearchResult:
    """Per-query search outcome of one gallery protocol.

    Attributes:
        name: the protocol's name.
        ap: ``(Q,)`` AP x recall per query (0 when nothing is found or no listing has the target).
        topk: the k values; ``hits``: ``(Q, len(topk))`` bool, a true positive within the first k.
        num_gt: ``(Q,)`` recall denominators; ``num_tp``: ``(Q,)`` targets found.
        ranked_dets: ``(Q, R)`` indices into the gallery arrays *as given* (before the score
            filter) of the R best detections, ``-1`` padded; ``ranked_scores``, ``ranked_correct``.
    """

    name: str
    ap: np.ndarray
    topk: Tuple[int, ...]
    hits: np.ndarray
    num_gt: np.ndarray
    num_tp: np.ndarray
    ranked_dets: np.ndarray
    ranked_scores: np.ndarray
    ranked_correct: np.ndarray
    extras: dict = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        return int(self.ap.size)

    @property
    def mAP(self) -> float:  # noqa: N802 (the field's usual name)
        """Mean of ``ap`` over all queries; 0.0 when there is no query."""
        return float(self.ap.mean()) if self.ap.size else 0.0

    def accuracy(self) -> dict:
        """``{k: fraction of queries with a hit in the top k}``; 0.0 when there is no query."""
        return {
            k: (float(self.hits[:, i].mean()) if self.ap.size else 0.0)
            for i, k in enumerate(self.topk)
        }

    @property
    def num_queries_without_target(self) -> int:
        return int((self.num_gt == 0).sum())


def search_metrics(
    gallery: GalleryDetections,
    query_embeddings: np.ndarray,
    galleries: Union[QueryGalleries, Sequence[QueryGalleries]],
    *,
    score_thresh: float = 0.5,
    topk: Sequence[int] = (1, 5, 10),
    num_ranked: int = 10,
    cbgm: Optional[CBGMContext] = None,
    chunk_size: int = 128,
    strategy: str = "auto",
) -> Union[SearchResult, list]:
    """Search mAP / top-k of every query over one or several gallery protocols.

    Args:
        gallery: all gallery detections (:class:`GalleryDetections`).
        query_embeddings: ``(Q, D)`` L2-normalised embedding of each query box.
        galleries: one :class:`QueryGalleries` or several over the same queries (e.g. the CUHK-SYSU
            gallery sizes, or PRW "all" and "multi_view").
        score_thresh: gallery detections below are ignored.
        topk: k values of the top-k accuracy (over the ranked detections).
        num_ranked: length of the ranked lists returned per query.
        cbgm: optional CBGM re-ranking inputs (off when None, as in the paper).
        chunk_size: queries per matrix product ("matmul").
        strategy: how similarities are computed; the numbers do not depend on it beyond
            floating-point summation order.
            "matmul": one product per chunk of queries against all detections, shared by all
            protocols, then per query NumPy operations over its gallery (dense galleries: PRW,
            large CUHK-SYSU sizes);
            "pairs": per protocol, only the products each query needs (image-major, see
            ``search_kernels.pair_similarities``), then scoring vectorised across queries
            (sparse galleries: CUHK-SYSU G50-G500);
            "auto": "pairs" when the protocols together need less than :data:`PAIRS_FRACTION` of
            the dense products.

    Returns:
        A :class:`SearchResult` per protocol (a single one when ``galleries`` is a single protocol).

    A query whose target is in no gallery listing (recall denominator 0; the reference divides by
    zero) gets AP 0 and no hit, and is still counted in the means: the mean stays over all queries
    as the protocol defines it, so the figure can only be pessimistic, never inflated; the count is
    reported as ``SearchResult.num_queries_without_target``. With no query at all, means are 0.
    """
    single = isinstance(galleries, QueryGalleries)
    protocols = [galleries] if single else list(galleries)
    query_embeddings = np.asarray(query_embeddings)
    num_queries = len(query_embeddings)
    for p in protocols:
        if p.num_queries != num_queries:
            raise ValueError(
                f"protocol {p.name!r} has {p.num_queries} queries, embeddings {num_queries}"
            )
    topk_arr = np.asarray([int(k) for k in topk], dtype=np.int64)
    kg = KeptGallery.build(gallery, score_thresh, query_embeddings)
    q_emb = np.ascontiguousarray(
        query_embeddings.astype(kg.emb.dtype, copy=False).reshape(num_queries, kg.dim)
    )
    candidates = [Candidates.build(p, kg) for p in protocols]

    if strategy == "auto":
        needed = sum(float(c.rows_per_query.sum()) for c in candidates)
        strategy = "pairs" if needed < PAIRS_FRACTION * num_queries * kg.num_kept else "matmul"
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    nodes = cbgm_nodes(cbgm, q_emb, kg.dim) if cbgm is not None else None
    scorer = STRATEGIES[strategy](candidates, kg, q_emb)

    tables = [ScoreTable.empty(num_queries, topk_arr.size, num_ranked) for _ in candidates]
    scorer.score(candidates, topk_arr, num_ranked, tables, nodes, cbgm, chunk_size)
    results = [
        _search_result(c, table, topk_arr, kg.kept, strategy)
        for c, table in zip(candidates, tables)
    ]
    return results[0] if single else results


def _search_result(
    cands: Candidates, table: ScoreTable, topk: np.ndarray, kept: np.ndarray, strategy: str
) -> SearchResult:
    return SearchResult(
        name=cands.galleries.name,
        ap=table.ap,
        topk=tuple(int(k) for k in topk),
        hits=table.hits,
        num_gt=cands.num_gt,
        num_tp=table.num_tp,
        ranked_dets=np.where(table.ranked >= 0, np.r_[kept, -1][table.ranked], -1),  # -1 stays -1
        ranked_scores=table.ranked_scores,
        ranked_correct=table.ranked_correct,
        extras={"strategy": strategy},
    )
