"""How :func:`.search.search_metrics` scores the queries: the gallery above the score threshold,
each protocol's candidate true positives, and the two similarity strategies (internal).

"pairs" computes, per protocol, only the products each query needs and scores all queries at once
(CBGM: query by query); "matmul" computes one product per chunk of queries against all kept
detections, shared by the protocols, and scores query by query. :func:`.search.search_metrics`
chooses one (:data:`STRATEGIES`) and calls its ``score``. Array conventions: :mod:`.search_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from . import search_kernels as K
from .csr import ranges
from .detection import matched_box_iou
from .galleries import CBGMContext, GalleryDetections, QueryGalleries


def reid_iou_threshold(boxes: np.ndarray) -> np.ndarray:
    """The search true-positive IoU threshold ``min(0.5, w*h / ((w + 10) * (h + 10)))`` per box.

    Relaxed below 0.5 for small targets, whose IoU with a slightly shifted detection drops fast.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.minimum(0.5, (w * h) / ((w + 10.0) * (h + 10.0)))


@dataclass(frozen=True)
class KeptGallery:
    """The gallery detections above the score threshold, re-indexed 0..N-1 (image-major)."""

    emb: np.ndarray  # (N, D) in the working dtype (float32, or float64 when given float64)
    boxes: np.ndarray  # (N, 4) float64
    det_image: np.ndarray  # (N,) gallery image of each kept detection
    det_starts: np.ndarray  # (I,) first kept detection of each image
    det_counts: np.ndarray  # (I,) kept detections of each image
    kept: np.ndarray  # (N,) index of each kept detection in the arrays as given

    @property
    def num_kept(self) -> int:
        return int(self.kept.size)

    @property
    def dim(self) -> int:
        return int(self.emb.shape[1])

    @classmethod
    def build(
        cls, gallery: GalleryDetections, score_thresh: float, query_embeddings: np.ndarray
    ) -> "KeptGallery":
        scores = np.asarray(gallery.scores).ravel()
        det_image_all = np.repeat(
            np.arange(gallery.num_images), np.diff(np.asarray(gallery.splits, dtype=np.int64))
        )
        keep = scores >= score_thresh
        kept = np.flatnonzero(keep)
        emb = np.asarray(gallery.embeddings)
        work_dtype = np.result_type(emb.dtype, np.float32)
        emb = (
            emb.astype(work_dtype, copy=False)
            if keep.all()
            else emb[kept].astype(work_dtype, copy=False)
        )
        if emb.ndim == 2:
            dim = emb.shape[1]
        else:  # an empty gallery given as a 1-D array: take the width from the queries
            dim = (
                int(np.asarray(query_embeddings).shape[-1])
                if np.asarray(query_embeddings).ndim == 2
                else 0
            )
        det_image = det_image_all[kept]
        det_counts = np.bincount(det_image, minlength=gallery.num_images).astype(np.int64)
        return cls(
            emb=emb.reshape(-1, dim),
            boxes=np.asarray(gallery.boxes, dtype=np.float64).reshape(-1, 4)[kept],
            det_image=det_image,
            det_starts=np.cumsum(det_counts) - det_counts,
            det_counts=det_counts,
            kept=kept,
        )


@dataclass(frozen=True)
class Candidates:
    """One protocol's candidate true positives of every query, computed once (features are not
    needed for this): the kept detections of each scored target image passing the IoU rule."""

    galleries: QueryGalleries
    num_gt: np.ndarray  # (Q,)
    cand_splits: np.ndarray  # (Q + 1,) CSR over cand_det / cand_target
    cand_det: np.ndarray  # kept-detection index passing the IoU rule with a scored target row
    cand_target: np.ndarray  # that target row (sorted; candidates of a row are contiguous)
    rows_per_query: np.ndarray  # (Q,) kept detections searched

    @classmethod
    def build(cls, gq: QueryGalleries, kg: KeptGallery) -> "Candidates":
        num_queries = gq.num_queries
        target_splits = np.asarray(gq.target_splits, dtype=np.int64)
        q_of_target = np.repeat(np.arange(num_queries), np.diff(target_splits))
        t_images = np.asarray(gq.target_images, dtype=np.int64)
        rows = np.flatnonzero(np.asarray(gq.target_scored, dtype=bool) & (t_images >= 0))
        t_img = t_images[rows]
        t_box = np.asarray(gq.target_boxes, dtype=np.float64).reshape(-1, 4)[rows]
        n = kg.det_counts[t_img]
        pair_t = np.repeat(np.arange(rows.size), n)
        pair_d = ranges(kg.det_starts[t_img], n)
        iou = matched_box_iou(kg.boxes[pair_d], t_box[pair_t])
        ok = iou >= reid_iou_threshold(t_box)[pair_t]
        cand_det, cand_target = pair_d[ok], rows[pair_t[ok]]
        cand_splits = np.searchsorted(
            q_of_target[cand_target], np.arange(num_queries + 1), side="left"
        )

        per_image = np.r_[0, np.cumsum(kg.det_counts[np.asarray(gq.images, dtype=np.int64)])]
        image_splits = np.asarray(gq.image_splits, dtype=np.int64)
        rows_per_query = per_image[image_splits[1:]] - per_image[image_splits[:-1]]
        return cls(
            gq,
            np.diff(target_splits),
            cand_splits.astype(np.int64),
            cand_det,
            cand_target,
            rows_per_query,
        )


@dataclass
class ScoreTable:
    """Per-query outputs of one protocol (rows: queries), filled by a strategy."""

    ap: np.ndarray
    hits: np.ndarray
    num_tp: np.ndarray
    ranked: np.ndarray  # kept-detection indices, -1 padded
    ranked_scores: np.ndarray
    ranked_correct: np.ndarray

    @classmethod
    def empty(cls, num_queries: int, num_k: int, num_ranked: int) -> "ScoreTable":
        return cls(
            ap=np.zeros(num_queries),
            hits=np.zeros((num_queries, num_k), dtype=bool),
            num_tp=np.zeros(num_queries, dtype=np.int64),
            ranked=np.full((num_queries, num_ranked), -1, dtype=np.int64),
            ranked_scores=np.full((num_queries, num_ranked), np.nan),
            ranked_correct=np.zeros((num_queries, num_ranked), dtype=bool),
        )

    def set_rows(self, q0: int, q1: int, scores: K.QueryScores) -> None:
        """Rows ``q0:q1`` from :func:`.search_kernels.score_flat` (full-width ranked lists)."""
        for name, value in scores._asdict().items():
            getattr(self, name)[q0:q1] = value

    def set_query(self, q: int, scores: K.QueryScores) -> None:
        """Row ``q`` from :func:`.search_kernels.score_query` (a ranked list maybe shorter)."""
        self.ap[q], self.hits[q], self.num_tp[q] = scores.ap, scores.hits, scores.num_tp
        n = scores.ranked.size
        self.ranked[q, :n] = scores.ranked
        self.ranked_scores[q, :n] = scores.ranked_scores
        self.ranked_correct[q, :n] = scores.ranked_correct


def cbgm_nodes(cbgm: CBGMContext, q_emb: np.ndarray, dim: int) -> list:
    """Per query, the CBGM graph's query-side nodes (query embedding first), or None when the
    query has no context person (CBGM is then a no-op for it)."""
    splits = np.asarray(cbgm.context_splits, dtype=np.int64)
    if splits.size != q_emb.shape[0] + 1:
        raise ValueError("cbgm.context_splits must have one entry per query + 1")
    ctx = np.asarray(cbgm.context_embeddings).astype(q_emb.dtype, copy=False).reshape(-1, dim)
    nodes = []
    for q in range(q_emb.shape[0]):
        c = ctx[splits[q] : splits[q + 1]][: max(cbgm.k2 - 1, 0)]
        nodes.append(np.concatenate([q_emb[q : q + 1], c], axis=0) if len(c) else None)
    return nodes


class SimilarityStrategy:
    """How the query x detection similarities are computed, and scored with them."""

    name = ""

    def __init__(self, candidates: List[Candidates], kg: KeptGallery, q_emb: np.ndarray) -> None:
        self.kg, self.q_emb = kg, q_emb

    def load_chunk(self, q0: int, q1: int) -> None:
        """Called before queries ``q0:q1`` are scored one by one."""

    def of_query(self, protocol: int, cands: Candidates, q: int):
        """``(similarities, kept detections)`` of query ``q``'s gallery in protocol ``protocol``."""
        raise NotImplementedError

    def of_detections(self, q: int, dets: np.ndarray) -> Optional[np.ndarray]:
        """Similarities of query ``q`` with kept detections ``dets`` when at hand, else None."""
        return None

    def score(
        self,
        candidates: List[Candidates],
        topk: np.ndarray,
        num_ranked: int,
        tables: List[ScoreTable],
        nodes: Optional[list],
        cbgm: Optional[CBGMContext],
        chunk_size: int,
    ) -> None:
        """Fill ``tables`` (one per protocol), query by query (NumPy over each query's gallery), a
        chunk of queries at a time; CBGM re-ranking where ``nodes`` (CBGM graph nodes per query,
        or None) holds a query's graph nodes."""
        kg = self.kg
        num_queries = self.q_emb.shape[0]
        posmap = np.zeros(kg.num_kept, dtype=np.int64)  # a detection's position in its query list
        for q0 in range(0, num_queries, chunk_size):
            q1 = min(q0 + chunk_size, num_queries)
            self.load_chunk(q0, q1)
            for q in range(q0, q1):
                q_nodes = nodes[q] if nodes is not None else None
                for pi, cands in enumerate(candidates):
                    c0, c1 = cands.cand_splits[q], cands.cand_splits[q + 1]
                    cand_det = cands.cand_det[c0:c1]
                    s, dets = self.of_query(pi, cands, q)
                    if q_nodes is not None:
                        s = s.copy()  # re-ranked in place
                        if dets.size:
                            K.cbgm_rerank(s, dets, q_nodes, kg.emb, kg.det_image, cbgm.k1)
                    if not cand_det.size:
                        cs = s[:0]
                    else:
                        cs = self.of_detections(q, cand_det) if q_nodes is None else None
                        if cs is None:
                            posmap[dets] = np.arange(dets.size)
                            cs = s[posmap[cand_det]]
                    scores = K.score_query(
                        s,
                        dets,
                        cs,
                        cand_det,
                        cands.cand_target[c0:c1],
                        int(cands.num_gt[q]),
                        topk,
                        num_ranked,
                    )
                    tables[pi].set_query(q, scores)


class MatmulStrategy(SimilarityStrategy):
    """ "matmul": one product per chunk of queries against all kept detections, shared by all
    protocols, then NumPy over each query's gallery (dense galleries: PRW, large CUHK-SYSU)."""

    name = "matmul"

    def __init__(self, candidates: List[Candidates], kg: KeptGallery, q_emb: np.ndarray) -> None:
        super().__init__(candidates, kg, q_emb)
        self._q0, self._sims = 0, None

    def load_chunk(self, q0: int, q1: int) -> None:
        self._q0, self._sims = q0, self.q_emb[q0:q1] @ self.kg.emb.T

    def of_query(self, protocol: int, cands: Candidates, q: int):
        gq = cands.galleries
        imgs = gq.images[gq.image_splits[q] : gq.image_splits[q + 1]]
        dets = ranges(self.kg.det_starts[imgs], self.kg.det_counts[imgs])
        return self._sims[q - self._q0][dets], dets

    def of_detections(self, q: int, dets: np.ndarray) -> Optional[np.ndarray]:
        return self._sims[q - self._q0][dets]


class PairsStrategy(SimilarityStrategy):
    """ "pairs": per protocol, only the products each query needs (image-major, see
    :func:`.search_kernels.pair_similarities`), then scoring vectorised across queries (sparse
    galleries: CUHK-SYSU G50-G500); with CBGM, query by query."""

    name = "pairs"

    def __init__(self, candidates: List[Candidates], kg: KeptGallery, q_emb: np.ndarray) -> None:
        super().__init__(candidates, kg, q_emb)
        self.pairs = [
            K.pair_similarities(
                c.galleries.images,
                c.galleries.image_splits,
                q_emb,
                kg.emb,
                kg.det_starts,
                kg.det_counts,
            )
            for c in candidates
        ]

    def of_query(self, protocol: int, cands: Candidates, q: int):
        sims, dets, offsets = self.pairs[protocol]
        return sims[offsets[q] : offsets[q + 1]], dets[offsets[q] : offsets[q + 1]]

    def score(self, candidates, topk, num_ranked, tables, nodes, cbgm, chunk_size) -> None:
        if nodes is not None:
            super().score(candidates, topk, num_ranked, tables, nodes, cbgm, chunk_size)
            return
        for cands, pairs, table in zip(candidates, self.pairs, tables):
            score_all_queries(cands, pairs, self.kg, topk, num_ranked, table)


#: The similarity strategies by name (see :func:`.search.search_metrics`).
STRATEGIES = {"pairs": PairsStrategy, "matmul": MatmulStrategy}


def score_all_queries(
    cands: Candidates,
    pairs: K.PairSimilarities,
    kg: KeptGallery,
    topk: np.ndarray,
    num_ranked: int,
    table: ScoreTable,
) -> None:
    """Score every query of one protocol from its "pairs" similarities, vectorised across queries
    (in chunks of bounded memory)."""
    flat, flat_dets, offsets = pairs
    gq = cands.galleries
    q_of_target = np.repeat(
        np.arange(gq.num_queries), np.diff(np.asarray(gq.target_splits, dtype=np.int64))
    )
    cand_query = q_of_target[cands.cand_target]
    try:
        cand_pos = K.pair_positions(
            gq.images,
            gq.image_splits,
            cand_query,
            np.asarray(gq.target_images, dtype=np.int64)[cands.cand_target],
            cands.cand_det,
            kg.det_starts,
            kg.det_counts,
        )
    except ValueError as exc:
        raise ValueError(f"protocol {gq.name!r}: {exc}") from None
    for qa, qb in K.flat_chunks(offsets, cands.cand_splits):
        e0, e1 = offsets[qa], offsets[qb]
        c0, c1 = cands.cand_splits[qa], cands.cand_splits[qb]
        scores = K.score_flat(
            flat[e0:e1],
            flat_dets[e0:e1],
            offsets[qa : qb + 1] - e0,
            cand_pos[c0:c1] - e0,
            cands.cand_target[c0:c1],
            cand_query[c0:c1] - qa,
            cands.num_gt[qa:qb],
            topk,
            num_ranked,
        )
        table.set_rows(qa, qb, scores)
