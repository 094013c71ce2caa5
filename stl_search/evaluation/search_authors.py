"""The search metrics as the paper's authors compute them, beside SeqNet's (:mod:`.search_metrics`).

The paper (4.3) regards a detection as correct when its IoU with a ground-truth box is *larger
than* 0.5, and its authors' evaluation labels every gallery detection before any query is seen:

* a detection takes the identity of the ground-truth box it overlaps most in its image, if that
  IoU is ``> iou_thresh`` (0.5), else none (ties: the first such box);
* for a query, every detection of its gallery images carrying the query's identity is a true
  positive: several per image are possible (SeqNet: at most one, the most similar among those
  passing ``IoU >= min(0.5, w h / ((w + 10)(h + 10)))`` with the target's box), and a detection
  overlapping the target less than another person is a negative (SeqNet: a positive candidate);
* AP = scikit-learn's average precision of the ranked detections times recall = true positives
  found / gallery listings containing the target (not capped at 1, as theirs); 0 when none is
  found. Top-k: a true positive within the k most similar detections;
* detections are kept when their score is ``> score_thresh`` (torchvision's rule; SeqNet ``>=``).

The search scope (which gallery images a query searches, and the recall denominator) is the
protocol's :class:`.QueryGalleries`, the same as SeqNet's rule gets. Ties in similarity go to the
detection that comes first in the gallery arrays, as in :mod:`.search_metrics`. Pure NumPy.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from .csr import ranges
from .detection import average_precision, matched_box_iou
from .galleries import GalleryDetections, QueryGalleries
from .search_metrics import SearchResult

__all__ = ["authors_search_metrics", "detection_identities"]


def detection_identities(
    gallery: GalleryDetections,
    gt_boxes: np.ndarray,
    gt_identities: np.ndarray,
    gt_splits: np.ndarray,
    iou_thresh: float = 0.5,
) -> np.ndarray:
    """``(N,)`` identity of each gallery detection: that of its best-overlapping ground-truth box
    in the same image when the IoU is ``> iou_thresh``, else ``-1`` (also for unlabeled boxes).

    Args:
        gallery: the detections (CSR by image).
        gt_boxes: ``(G, 4)`` XYXY; ``gt_identities``: ``(G,)``, ``-1`` unlabeled; ``gt_splits``:
            ``(I + 1,)`` CSR by the same images as ``gallery``.
    """
    det_splits = np.asarray(gallery.splits, dtype=np.int64)
    gt_splits = np.asarray(gt_splits, dtype=np.int64)
    if gt_splits.size != det_splits.size:
        raise ValueError(
            f"ground truth covers {gt_splits.size - 1} images, detections {det_splits.size - 1}"
        )
    num_dets = int(det_splits[-1])
    det_image = np.repeat(np.arange(det_splits.size - 1), np.diff(det_splits))
    gt_count = np.diff(gt_splits)[det_image]
    pair_det = np.repeat(np.arange(num_dets), gt_count)
    pair_gt = ranges(gt_splits[:-1][det_image], gt_count)
    boxes = np.asarray(gallery.boxes, dtype=np.float64).reshape(-1, 4)
    gts = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    iou = matched_box_iou(boxes[pair_det], gts[pair_gt])
    out = np.full(num_dets, -1, dtype=np.int64)
    if iou.size:
        order = np.lexsort((pair_gt, -iou, pair_det))  # per detection: best IoU, then first box
        first = order[np.r_[True, pair_det[order][1:] != pair_det[order][:-1]]]
        best = first[iou[first] > iou_thresh]
        out[pair_det[best]] = np.asarray(gt_identities, dtype=np.int64)[pair_gt[best]]
    return out


def authors_search_metrics(
    gallery: GalleryDetections,
    det_identities: np.ndarray,
    query_embeddings: np.ndarray,
    query_identities: np.ndarray,
    galleries: Union[QueryGalleries, Sequence[QueryGalleries]],
    *,
    score_thresh: float = 0.5,
    topk: Sequence[int] = (1, 5, 10),
    num_ranked: int = 10,
    chunk_size: int = 128,
) -> Union[SearchResult, list]:
    """Search mAP / top-k of every query by the authors' rule (module docstring), per protocol.

    Args:
        gallery: all gallery detections; ``det_identities``: ``(N,)`` from
            :func:`detection_identities`.
        query_embeddings: ``(Q, D)`` L2-normalised; ``query_identities``: ``(Q,)``.
        galleries: one protocol or several over the same queries.
        score_thresh, topk, num_ranked: as in :func:`.search.search_metrics`.
        chunk_size: queries per matrix product.

    Returns:
        A :class:`.SearchResult` per protocol (one when ``galleries`` is a single protocol), named
        after it; ``num_tp`` counts every true positive found (possibly several per image).
    """
    single = isinstance(galleries, QueryGalleries)
    protocols = [galleries] if single else list(galleries)
    q_emb = np.asarray(query_embeddings, dtype=np.float32)
    q_ids = np.asarray(query_identities, dtype=np.int64)
    num_queries = len(q_ids)
    topk_arr = np.asarray([int(k) for k in topk], dtype=np.int64)
    splits = np.asarray(gallery.splits, dtype=np.int64)
    kept = np.flatnonzero(np.asarray(gallery.scores).ravel() > score_thresh)
    det_image = np.repeat(np.arange(splits.size - 1), np.diff(splits))[kept]
    det_counts = np.bincount(det_image, minlength=splits.size - 1).astype(np.int64)
    det_starts = np.cumsum(det_counts) - det_counts
    emb = np.asarray(gallery.embeddings, dtype=np.float32).reshape(len(gallery.scores), -1)[kept]
    ids = np.asarray(det_identities, dtype=np.int64)[kept]

    results = []
    for p in protocols:
        if p.num_queries != num_queries:
            raise ValueError(f"protocol {p.name!r} has {p.num_queries} queries, ids {num_queries}")
        ap = np.zeros(num_queries)
        hits = np.zeros((num_queries, topk_arr.size), dtype=bool)
        num_tp = np.zeros(num_queries, dtype=np.int64)
        ranked = np.full((num_queries, num_ranked), -1, dtype=np.int64)
        ranked_scores = np.zeros((num_queries, num_ranked), dtype=np.float32)
        ranked_correct = np.zeros((num_queries, num_ranked), dtype=bool)
        num_gt = p.num_listings_with_target()
        image_splits = np.asarray(p.image_splits, dtype=np.int64)
        images = np.asarray(p.images, dtype=np.int64)
        for q0 in range(0, num_queries, chunk_size):
            sims = q_emb[q0 : q0 + chunk_size] @ emb.T
            for q in range(q0, min(q0 + chunk_size, num_queries)):
                imgs = images[image_splits[q] : image_splits[q + 1]]
                dets = ranges(det_starts[imgs], det_counts[imgs])
                s = sims[q - q0, dets]
                order = np.lexsort((dets, -s))
                true = ids[dets[order]] == q_ids[q]
                num_tp[q] = int(true.sum())
                if num_tp[q] and num_gt[q]:
                    ap[q] = average_precision(true, s[order]) * num_tp[q] / num_gt[q]
                if num_tp[q]:
                    hits[q] = np.argmax(true) < topk_arr
                n = min(num_ranked, order.size)
                ranked[q, :n] = kept[dets[order[:n]]]
                ranked_scores[q, :n] = s[order[:n]]
                ranked_correct[q, :n] = true[:n]
        results.append(
            SearchResult(
                name=p.name,
                ap=ap,
                topk=tuple(int(k) for k in topk_arr),
                hits=hits,
                num_gt=num_gt,
                num_tp=num_tp,
                ranked_dets=ranked,
                ranked_scores=ranked_scores,
                ranked_correct=ranked_correct,
                extras={"rule": "authors"},
            )
        )
    return results[0] if single else results
