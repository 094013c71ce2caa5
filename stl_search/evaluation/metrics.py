"""The person-search protocol of PRW and CUHK-SYSU as pure, vectorised NumPy.

The published numbers of the SeqNet family come from ``eval_func.py`` of SeqNet (a port of the
2017 OIM evaluation). This module reproduces its numbers (``eval_detection``, ``eval_search_cuhk``,
``eval_search_prw``) and its quirks, without its per-image Python loops, and gives defined values
where it crashes. No Detectron2 here: the arrays below are the whole interface.

Array conventions (every function):
    * Boxes are ``XYXY`` absolute pixels, ``(n, 4)`` float.
    * Per-image variable-length data is *CSR*: a flat array plus ``splits`` of length
      ``num_images + 1``; the rows of image ``i`` are ``splits[i]:splits[i + 1]``.
    * Embeddings must already be L2-normalised: similarity is their dot product (cosine).

Protocol (SeqNet's ``eval_func.py``; see ``docs/protocol.md``):
    * detections with score ``>= score_thresh`` (0.5) are kept, for search and detection alike;
    * search: per query, per gallery image, only the highest-similarity detection whose IoU with
      the target's box is ``>= min(0.5, w*h / ((w + 10) * (h + 10)))`` is a true positive;
      AP = scikit-learn's ``average_precision_score`` of the ranked detections (ties grouped)
      times recall = found / gallery listings that contain the target; top-k over detections;
    * detection: SeqNet's one-to-one matching at IoU 0.5 (see :func:`detection_metrics`).

Tie-breaking (documented because the reference leaves it to NumPy's unstable sort): AP groups tied
scores, so it does not depend on it. Where an order is needed (which of two tied detections in one
image is the true positive, top-k, the ranked lists) ties go to the detection that comes first in
the gallery arrays (image order, then detection order).

Dependencies: NumPy; SciPy only for CBGM's assignment problem. The scoring kernels live in
:mod:`.search_kernels`; :func:`search_metrics` picks how similarities are computed (see there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import search_kernels as K
from .search_kernels import ranges as _ranges

__all__ = [
    "average_precision",
    "pairwise_box_iou",
    "reid_iou_threshold",
    "DetectionResult",
    "detection_metrics",
    "GalleryDetections",
    "QueryGalleries",
    "explicit_galleries",
    "prw_galleries",
    "CBGMContext",
    "query_context_from_gallery",
    "SearchResult",
    "search_metrics",
]

#: "auto" strategy of :func:`search_metrics`: compute only each query's own gallery ("pairs") when
#: the protocols need less than this fraction of the query x detection products, else one dense
#: product per chunk of queries ("matmul"). A pair product runs at a few times lower throughput
#: than a large matrix product (small per-image products, single-threaded), hence 0.2.
PAIRS_FRACTION = 0.2


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score(y_true, y_score)``, without scikit-learn.

    Non-interpolated AP over distinct score thresholds (tied scores form one threshold):
    ``sum_n (R_n - R_{n-1}) * P_n`` for thresholds in decreasing order.

    Args:
        y_true: ``(n,)`` bool (or 0/1) labels.
        y_score: ``(n,)`` scores, higher = more confident.

    Returns:
        AP in [0, 1]; 0.0 when there is no positive (scikit-learn also returns 0 there, with a
        warning) or no sample at all (where scikit-learn raises).
    """
    y_true = np.asarray(y_true).astype(bool).ravel()
    y_score = np.asarray(y_score).ravel()
    n_pos = int(y_true.sum())
    if n_pos == 0 or y_true.size == 0:
        return 0.0
    order = np.argsort(y_score, kind="mergesort")[::-1]
    s, t = y_score[order], y_true[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(t)[last_of_threshold].astype(np.float64)
    precision = tps / (last_of_threshold + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pairwise_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired boxes ``a[i]``, ``b[i]`` (``(n, 4)`` XYXY each), float64.

    The reference's formula (no +1 on widths). A non-positive union (degenerate boxes, where the
    reference divides by zero) gives 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    inter = iw * ih
    union = (
        (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        - inter
    )
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def reid_iou_threshold(boxes: np.ndarray) -> np.ndarray:
    """The search true-positive IoU threshold ``min(0.5, w*h / ((w + 10) * (h + 10)))`` per box.

    Relaxed below 0.5 for small targets, whose IoU with a slightly shifted detection drops fast.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.minimum(0.5, (w * h) / ((w + 10.0) * (h + 10.0)))


def _check_splits(splits: np.ndarray, n: int, what: str) -> np.ndarray:
    splits = np.asarray(splits, dtype=np.int64)
    if (
        splits.ndim != 1
        or splits.size < 1
        or splits[0] != 0
        or splits[-1] != n
        or np.any(np.diff(splits) < 0)
    ):
        raise ValueError(f"{what}: splits must start at 0, be non-decreasing and end at {n}")
    return splits


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectionResult:
    """Detection AP (fraction, AP x recall as the reference) and recall, with the counts behind them."""

    ap: float
    recall: float
    num_gt: int
    num_tp: int
    num_det: int


def detection_metrics(
    gt_boxes: np.ndarray,
    gt_splits: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_splits: np.ndarray,
    *,
    gt_labeled: Optional[np.ndarray] = None,
    labeled_only: bool = False,
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
) -> DetectionResult:
    """Detection AP and recall exactly as SeqNet's ``eval_detection``.

    Args:
        gt_boxes: ``(G, 4)`` ground-truth person boxes of all gallery images, CSR by ``gt_splits``
            (``(I + 1,)``).
        det_boxes, det_scores: ``(N, 4)``, ``(N,)`` detections, CSR by ``det_splits`` (``(I + 1,)``,
            same images in the same order).
        gt_labeled: ``(G,)`` bool, True for persons with an identity; needed for ``labeled_only``.
        labeled_only: the paper's "labeled persons" rows (Table 5).
        score_thresh: detections below are dropped.
        iou_thresh: IoU for a match.

    Semantics (the reference's, including its quirks):
        * per image, IoUs are rounded to float32; a detection matches a person when the IoU is
          ``>= iou_thresh``, the person is the detection's highest-IoU person *and* the detection
          is that person's highest-IoU detection (first index on ties); the rest are false positives;
        * AP = ``average_precision`` over all kept detections of the counted images x recall;
        * ``labeled_only``: unlabeled persons are removed, and images without a labeled person are
          skipped entirely (their detections are *not* counted as false positives).

    Where the reference fails we return defined numbers: an image with detections but no person
    (the reference's ``argmax`` of an empty array) counts its detections as false positives;
    ``recall = 0`` and ``ap = 0`` when there is no person at all (the reference divides by zero).
    """
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores).ravel()
    gt_splits = _check_splits(gt_splits, len(gt_boxes), "gt")
    det_splits = _check_splits(det_splits, len(det_boxes), "det")
    if gt_splits.size != det_splits.size:
        raise ValueError("gt_splits and det_splits must describe the same images")
    num_images = gt_splits.size - 1
    gt_img = np.repeat(np.arange(num_images), np.diff(gt_splits))
    det_img = np.repeat(np.arange(num_images), np.diff(det_splits))

    gt_keep = np.ones(len(gt_boxes), dtype=bool)
    det_keep = det_scores >= score_thresh
    if labeled_only:
        if gt_labeled is None:
            raise ValueError("labeled_only needs gt_labeled")
        gt_keep = np.asarray(gt_labeled, dtype=bool).ravel().copy()
        image_counted = np.bincount(gt_img[gt_keep], minlength=num_images) > 0
        det_keep &= image_counted[det_img]

    gt_idx, det_idx = np.flatnonzero(gt_keep), np.flatnonzero(det_keep)
    ng = np.bincount(gt_img[gt_idx], minlength=num_images)
    nd = np.bincount(det_img[det_idx], minlength=num_images)
    num_gt, num_det = int(ng.sum()), int(det_idx.size)
    if num_det == 0 or num_gt == 0:
        return DetectionResult(0.0, 0.0, num_gt, 0, num_det)

    # Every (person, detection) pair of the same image, as flat arrays (local -> kept indices).
    gt_start = np.cumsum(ng) - ng
    det_start = np.cumsum(nd) - nd
    npairs = ng * nd
    pair_img = np.repeat(np.arange(num_images), npairs)
    local = np.arange(int(npairs.sum())) - np.repeat(np.cumsum(npairs) - npairs, npairs)
    nd_pair = nd[pair_img]
    g = gt_start[pair_img] + local // np.maximum(nd_pair, 1)
    d = det_start[pair_img] + local % np.maximum(nd_pair, 1)
    iou = pairwise_box_iou(gt_boxes[gt_idx][g], det_boxes[det_idx][d]).astype(np.float32)

    # Per detection, its best person (np.argmax: first on ties); per person, its best detection.
    order = np.lexsort((g, -iou, d))
    first = order[np.r_[True, d[order][1:] != d[order][:-1]]]
    det_best_gt = np.empty(num_det, dtype=np.int64)
    det_best_gt[d[first]] = g[first]
    order = np.lexsort((d, -iou, g))
    first = order[np.r_[True, g[order][1:] != g[order][:-1]]]
    gt_best_det = np.full(num_gt, -1, dtype=np.int64)
    gt_best_det[g[first]] = d[first]

    tp_pair = (iou >= np.float32(iou_thresh)) & (det_best_gt[d] == g) & (gt_best_det[g] == d)
    y_true = np.zeros(num_det, dtype=bool)
    y_true[d[tp_pair]] = True
    num_tp = int(tp_pair.sum())
    recall = num_tp / num_gt
    ap = average_precision(y_true, det_scores[det_idx]) * recall
    return DetectionResult(float(ap), float(recall), num_gt, num_tp, num_det)


# --------------------------------------------------------------------------------------------
# Search inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GalleryDetections:
    """All gallery detections, image-major.

    Attributes:
        boxes: ``(N, 4)`` XYXY, original image frame.
        scores: ``(N,)`` detection confidences.
        embeddings: ``(N, D)`` L2-normalised (float16/32/64; float16 is computed in float32).
        splits: ``(I + 1,)`` CSR: the detections of gallery image ``i`` are rows ``splits[i]:splits[i+1]``.
            Image ``i`` is what :class:`QueryGalleries` calls gallery image index ``i``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    splits: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if len(self.boxes) != n or len(self.embeddings) != n:
            raise ValueError("boxes, scores and embeddings must have the same length")
        _check_splits(self.splits, n, "gallery")

    @property
    def num_images(self) -> int:
        return len(self.splits) - 1


@dataclass(frozen=True)
class QueryGalleries:
    """One gallery protocol: per query, which gallery images are searched and where the target is.

    Build it with :func:`explicit_galleries` (CUHK-SYSU ``TestG*.mat`` lists) or
    :func:`prw_galleries` (PRW "all" / "multi_view"); both guarantee the preconditions below.

    Attributes:
        image_splits: ``(Q + 1,)`` CSR over ``images``.
        images: ``(L,)`` gallery image indices (into :class:`GalleryDetections`) searched for each
            query, *distinct* within a query (an image listed twice is searched once). Order is
            irrelevant to the metrics.
        target_splits: ``(Q + 1,)`` CSR over the target rows.
        target_images: ``(T,)`` one row per gallery *listing* that contains the query's identity
            (a duplicate listing gives two rows: both count in the recall denominator). ``-1`` =
            an image that is not in the gallery arrays (counted, never found).
        target_boxes: ``(T, 4)`` the target's ground-truth box in that image.
        target_scored: ``(T,)`` bool: the row can yield a true positive. Exactly one row per
            (query, image) is scored, and only if that image is among the query's ``images``.
        name: label for logs and results.
    """

    image_splits: np.ndarray
    images: np.ndarray
    target_splits: np.ndarray
    target_images: np.ndarray
    target_boxes: np.ndarray
    target_scored: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        _check_splits(self.image_splits, len(self.images), "images")
        _check_splits(self.target_splits, len(self.target_images), "targets")
        if len(self.image_splits) != len(self.target_splits):
            raise ValueError("image_splits and target_splits must have one entry per query + 1")
        if len(self.target_boxes) != len(self.target_images) or len(self.target_scored) != len(
            self.target_images
        ):
            raise ValueError("target rows have inconsistent lengths")

    @property
    def num_queries(self) -> int:
        return len(self.image_splits) - 1

    def num_listings_with_target(self) -> np.ndarray:
        """``(Q,)`` recall denominators."""
        return np.diff(np.asarray(self.target_splits, dtype=np.int64))

    def validate(self, num_gallery_images: int) -> None:
        """Check the preconditions (O(L log L)); the builders guarantee them."""
        q_of_image = np.repeat(np.arange(self.num_queries), np.diff(self.image_splits))
        images = np.asarray(self.images, dtype=np.int64)
        if images.size and (images.min() < 0 or images.max() >= num_gallery_images):
            raise ValueError("image index out of range")
        key = q_of_image * (num_gallery_images + 1) + images
        if np.unique(key).size != key.size:
            raise ValueError("an image is listed twice for one query in `images`")
        q_of_target = np.repeat(np.arange(self.num_queries), np.diff(self.target_splits))
        scored = np.asarray(self.target_scored, dtype=bool)
        tkey = (
            q_of_target[scored] * (num_gallery_images + 1) + np.asarray(self.target_images)[scored]
        )
        if np.unique(tkey).size != tkey.size:
            raise ValueError("more than one scored target row for one (query, image)")
        if not np.isin(tkey, key).all():
            raise ValueError("a scored target image is not among the query's images")


def explicit_galleries(
    listing_splits: np.ndarray,
    listing_images: np.ndarray,
    target_listings: np.ndarray,
    target_boxes: np.ndarray,
    name: str = "",
) -> QueryGalleries:
    """Galleries given as explicit per-query lists (CUHK-SYSU ``TestG{size}.mat``), with the
    reference's handling of duplicates.

    Args:
        listing_splits: ``(Q + 1,)`` CSR over the listings.
        listing_images: ``(L,)`` gallery image index of each listing in file order; duplicates
            allowed; ``-1`` for an image absent from the gallery arrays.
        target_listings: ``(T,)`` indices into the listings of those that contain the target.
        target_boxes: ``(T, 4)`` XYXY target box of each of those listings.

    Reference quirks kept: every target listing counts in the recall denominator; an image is
    searched once, with the target box of its *first* listing (a later listing of the same image
    cannot add a true positive); the query's own image stays if listed.
    """
    listing_images = np.asarray(listing_images, dtype=np.int64).ravel()
    listing_splits = _check_splits(listing_splits, listing_images.size, "listings")
    target_listings = np.asarray(target_listings, dtype=np.int64).ravel()
    num_queries = listing_splits.size - 1
    q_of_listing = np.repeat(np.arange(num_queries), np.diff(listing_splits))

    num_keys = int(max(listing_images.max(initial=-1), 0)) + 2
    key = q_of_listing * num_keys + (listing_images + 1)
    _, first_idx = np.unique(key, return_index=True)
    first = np.zeros(listing_images.size, dtype=bool)
    first[first_idx] = True
    searched = first & (listing_images >= 0)
    images = listing_images[searched]
    image_splits = np.r_[0, np.cumsum(np.bincount(q_of_listing[searched], minlength=num_queries))]

    order = np.argsort(target_listings, kind="stable")
    target_listings = target_listings[order]
    target_boxes = np.asarray(target_boxes, dtype=np.float64).reshape(-1, 4)[order]
    q_of_target = q_of_listing[target_listings]
    target_splits = np.r_[0, np.cumsum(np.bincount(q_of_target, minlength=num_queries))]
    return QueryGalleries(
        image_splits=image_splits.astype(np.int64),
        images=images,
        target_splits=target_splits.astype(np.int64),
        target_images=listing_images[target_listings],
        target_boxes=target_boxes,
        target_scored=searched[target_listings],
        name=name,
    )


def prw_galleries(
    query_images: np.ndarray,
    query_identities: np.ndarray,
    query_cameras: np.ndarray,
    gallery_cameras: np.ndarray,
    gt_identities: np.ndarray,
    gt_boxes: np.ndarray,
    gt_splits: np.ndarray,
    mode: str = "all",
    name: str = "",
) -> QueryGalleries:
    """PRW galleries as ``eval_search_prw``: every gallery frame but the query's own ("all",
    ``ignore_cam_id=True``, the paper's), or only frames of other cameras ("multi_view").

    Args:
        query_images: ``(Q,)`` gallery index of each query's frame, ``-1`` if it is not a gallery
            frame (then nothing is excluded for "all").
        query_identities, query_cameras: ``(Q,)``.
        gallery_cameras: ``(I,)`` camera of each gallery frame.
        gt_identities: ``(G,)`` identity of each annotated person (unlabeled: any value no query
            has, e.g. -1), CSR by ``gt_splits`` (``(I + 1,)``); ``gt_boxes``: ``(G, 4)``.

    The target box in a frame is the *first* annotation of the query's identity there (the
    reference ravels all of them and its IoU reads the first four numbers). Recall denominator:
    the frames of the mode's gallery that show the identity.
    """
    if mode not in ("all", "multi_view"):
        raise ValueError(f"unknown PRW gallery mode {mode!r}")
    query_images = np.asarray(query_images, dtype=np.int64).ravel()
    query_identities = np.asarray(query_identities, dtype=np.int64).ravel()
    query_cameras = np.asarray(query_cameras, dtype=np.int64).ravel()
    gallery_cameras = np.asarray(gallery_cameras, dtype=np.int64).ravel()
    gt_identities = np.asarray(gt_identities, dtype=np.int64).ravel()
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_splits = _check_splits(gt_splits, gt_identities.size, "gt")
    num_queries, num_images = query_images.size, gallery_cameras.size
    if gt_splits.size != num_images + 1:
        raise ValueError("gt_splits must have one entry per gallery image + 1")

    # Searched images: a (Q, I) mask, built per chunk of queries to bound memory.
    image_chunks, counts = [], np.zeros(num_queries, dtype=np.int64)
    chunk = max(1, (1 << 24) // max(num_images, 1))
    cols = np.arange(num_images)
    for q0 in range(0, num_queries, chunk):
        q1 = min(q0 + chunk, num_queries)
        mask = cols[None, :] != query_images[q0:q1, None]
        if mode == "multi_view":
            mask &= gallery_cameras[None, :] != query_cameras[q0:q1, None]
        rows, cidx = np.nonzero(mask)
        image_chunks.append(cidx)
        counts[q0:q1] = np.bincount(rows, minlength=q1 - q0)
    images = np.concatenate(image_chunks) if image_chunks else np.empty(0, dtype=np.int64)

    # Table of (identity, image) -> first box, sorted by identity then image.
    gt_img = np.repeat(np.arange(num_images), np.diff(gt_splits))
    order = np.lexsort((np.arange(gt_identities.size), gt_img, gt_identities))
    ident_s, img_s = gt_identities[order], gt_img[order]
    firsts = (
        order[np.r_[True, (ident_s[1:] != ident_s[:-1]) | (img_s[1:] != img_s[:-1])]]
        if order.size
        else order
    )
    tab_ident, tab_img, tab_box = gt_identities[firsts], gt_img[firsts], gt_boxes[firsts]

    lo = np.searchsorted(tab_ident, query_identities, side="left")
    hi = np.searchsorted(tab_ident, query_identities, side="right")
    rows = _ranges(lo, hi - lo)
    q_of_row = np.repeat(np.arange(num_queries), hi - lo)
    t_img = tab_img[rows]
    keep = t_img != query_images[q_of_row]
    if mode == "multi_view":
        keep &= gallery_cameras[t_img] != query_cameras[q_of_row]
    rows, q_of_row = rows[keep], q_of_row[keep]
    target_splits = np.r_[0, np.cumsum(np.bincount(q_of_row, minlength=num_queries))]
    return QueryGalleries(
        image_splits=np.r_[0, np.cumsum(counts)].astype(np.int64),
        images=images.astype(np.int64),
        target_splits=target_splits.astype(np.int64),
        target_images=tab_img[rows],
        target_boxes=tab_box[rows],
        target_scored=np.ones(rows.size, dtype=bool),
        name=name or mode,
    )


# --------------------------------------------------------------------------------------------
# CBGM context
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CBGMContext:
    """Inputs of context bipartite graph matching (SeqNet's CBGM re-ranking).

    Attributes:
        k1: re-rank the gallery images of the top-``k1`` detections (10 CUHK-SYSU, 30 PRW).
        k2: graph nodes on the query side: the query box plus ``k2 - 1`` context persons
            (3 CUHK-SYSU, 4 PRW).
        context_splits: ``(Q + 1,)`` CSR over ``context_embeddings``.
        context_embeddings: ``(C, D)`` per query, L2-normalised embeddings of the *other* persons
            detected in the query frame, most confident first (the query box itself is not
            included: the query embedding is always node 0). Only the first ``k2 - 1`` are used.
            See :func:`query_context_from_gallery`.
    """

    k1: int
    k2: int
    context_splits: np.ndarray
    context_embeddings: np.ndarray

    def __post_init__(self) -> None:
        _check_splits(self.context_splits, len(self.context_embeddings), "context")
        if self.k1 < 1 or self.k2 < 1:
            raise ValueError("k1 and k2 must be >= 1")


def query_context_from_gallery(
    gallery: GalleryDetections,
    query_images: np.ndarray,
    query_boxes: np.ndarray,
    k2: int,
    score_thresh: float = 0.5,
    nms_iou: float = 0.5,
) -> CBGMContext:
    """Context persons of each query from the gallery detections of its own frame.

    SeqNet detects persons in the query frame with the ground-truth query box inserted at score 1
    and NMS at 0.5, and keeps the ``k2`` most confident (the query box first). We reuse the
    detections the gallery pass already produced for that frame: those with score
    ``>= score_thresh`` and IoU ``<= nms_iou`` with the query box, most confident first.
    The query frame is normally a gallery frame (in the standard PRW and CUHK-SYSU test splits the
    query frames are test frames); one that is not (``query_images[q] == -1``, e.g. a custom split)
    gets no context, which makes CBGM a no-op for that query rather than an error. ``k1`` is left
    at 1 here: set it with ``dataclasses.replace(context, k1=...)``.
    """
    query_images = np.asarray(query_images, dtype=np.int64).ravel()
    query_boxes = np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4)
    splits = np.asarray(gallery.splits, dtype=np.int64)
    rows, counts = [], np.zeros(query_images.size, dtype=np.int64)
    for q, img in enumerate(query_images):  # a loop over queries: a handful of rows each
        if img < 0 or k2 <= 1:
            continue
        r = np.arange(splits[img], splits[img + 1])
        r = r[gallery.scores[r] >= score_thresh]
        r = r[
            pairwise_box_iou(gallery.boxes[r], np.broadcast_to(query_boxes[q], (r.size, 4)))
            <= nms_iou
        ]
        r = r[np.argsort(-np.asarray(gallery.scores[r], dtype=np.float64), kind="stable")][: k2 - 1]
        rows.append(r)
        counts[q] = r.size
    rows_all = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    emb = np.asarray(gallery.embeddings)[rows_all]
    return CBGMContext(
        k1=1,
        k2=k2,
        context_splits=np.r_[0, np.cumsum(counts)].astype(np.int64),
        context_embeddings=emb,
    )


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class _Prepared:
    """Per-protocol arrays computed once: the candidate true positives of every query."""

    galleries: QueryGalleries
    num_gt: np.ndarray  # (Q,)
    cand_splits: np.ndarray  # (Q + 1,) CSR over cand_det / cand_target
    cand_det: np.ndarray  # kept-detection index passing the IoU rule with a scored target row
    cand_target: np.ndarray  # that target row (sorted; candidates of a row are contiguous)
    rows_per_query: np.ndarray  # (Q,) kept detections searched


def _prepare(
    gq: QueryGalleries, det_starts: np.ndarray, det_counts: np.ndarray, det_boxes: np.ndarray
) -> _Prepared:
    """Candidate true positives of every query at once: the kept detections of each scored target
    image that pass the IoU rule against the target box (features are not needed for this)."""
    num_queries = gq.num_queries
    target_splits = np.asarray(gq.target_splits, dtype=np.int64)
    q_of_target = np.repeat(np.arange(num_queries), np.diff(target_splits))
    t_images = np.asarray(gq.target_images, dtype=np.int64)
    rows = np.flatnonzero(np.asarray(gq.target_scored, dtype=bool) & (t_images >= 0))
    t_img = t_images[rows]
    t_box = np.asarray(gq.target_boxes, dtype=np.float64).reshape(-1, 4)[rows]
    n = det_counts[t_img]
    pair_t = np.repeat(np.arange(rows.size), n)
    pair_d = _ranges(det_starts[t_img], n)
    ok = pairwise_box_iou(det_boxes[pair_d], t_box[pair_t]) >= reid_iou_threshold(t_box)[pair_t]
    cand_det, cand_target = pair_d[ok], rows[pair_t[ok]]
    cand_splits = np.searchsorted(q_of_target[cand_target], np.arange(num_queries + 1), side="left")

    per_image = np.r_[0, np.cumsum(det_counts[np.asarray(gq.images, dtype=np.int64)])]
    image_splits = np.asarray(gq.image_splits, dtype=np.int64)
    rows_per_query = per_image[image_splits[1:]] - per_image[image_splits[:-1]]
    return _Prepared(
        gq,
        np.diff(target_splits),
        cand_splits.astype(np.int64),
        cand_det,
        cand_target,
        rows_per_query,
    )


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
    kg = _KeptGallery.build(gallery, score_thresh, query_embeddings)
    q_emb = np.ascontiguousarray(
        query_embeddings.astype(kg.emb.dtype, copy=False).reshape(num_queries, kg.dim)
    )
    prepared = [_prepare(p, kg.det_starts, kg.det_counts, kg.boxes) for p in protocols]

    if strategy == "auto":
        needed = sum(float(p.rows_per_query.sum()) for p in prepared)
        strategy = "pairs" if needed < PAIRS_FRACTION * num_queries * kg.num_kept else "matmul"
    if strategy not in ("pairs", "matmul"):
        raise ValueError(f"unknown strategy {strategy!r}")
    nodes = _cbgm_nodes(cbgm, q_emb, kg.dim) if cbgm is not None else None

    outputs = [_Outputs.empty(num_queries, topk_arr.size, num_ranked) for _ in prepared]
    if strategy == "pairs":
        pair_data = [
            K.pair_similarities(
                p.galleries.images,
                p.galleries.image_splits,
                q_emb,
                kg.emb,
                kg.det_starts,
                kg.det_counts,
            )
            for p in prepared
        ]
        if nodes is None:
            for prep, data, out in zip(prepared, pair_data, outputs):
                _score_pairs_flat(prep, data, kg, topk_arr, num_ranked, out)
        else:
            _score_per_query(
                prepared, kg, q_emb, topk_arr, num_ranked, outputs, nodes, cbgm, pair_data=pair_data
            )
    else:
        _score_per_query(
            prepared, kg, q_emb, topk_arr, num_ranked, outputs, nodes, cbgm, chunk_size=chunk_size
        )

    results = [
        out.result(prep, topk_arr, kg.kept, strategy) for prep, out in zip(prepared, outputs)
    ]
    return results[0] if single else results


@dataclass(frozen=True)
class _KeptGallery:
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
    ) -> "_KeptGallery":
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


@dataclass
class _Outputs:
    """Per-query outputs of one protocol, filled by the scoring paths."""

    ap: np.ndarray
    hits: np.ndarray
    num_tp: np.ndarray
    ranked: np.ndarray  # kept-detection indices, -1 padded
    ranked_scores: np.ndarray
    ranked_correct: np.ndarray

    @classmethod
    def empty(cls, num_queries: int, num_k: int, num_ranked: int) -> "_Outputs":
        return cls(
            ap=np.zeros(num_queries),
            hits=np.zeros((num_queries, num_k), dtype=bool),
            num_tp=np.zeros(num_queries, dtype=np.int64),
            ranked=np.full((num_queries, num_ranked), -1, dtype=np.int64),
            ranked_scores=np.full((num_queries, num_ranked), np.nan),
            ranked_correct=np.zeros((num_queries, num_ranked), dtype=bool),
        )

    def result(
        self, prep: "_Prepared", topk: np.ndarray, kept: np.ndarray, strategy: str
    ) -> SearchResult:
        return SearchResult(
            name=prep.galleries.name,
            ap=self.ap,
            topk=tuple(int(k) for k in topk),
            hits=self.hits,
            num_gt=prep.num_gt,
            num_tp=self.num_tp,
            ranked_dets=np.where(self.ranked >= 0, np.r_[kept, -1][self.ranked], -1),  # -1 stays -1
            ranked_scores=self.ranked_scores,
            ranked_correct=self.ranked_correct,
            extras={"strategy": strategy},
        )


def _cbgm_nodes(cbgm: CBGMContext, q_emb: np.ndarray, dim: int) -> list:
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


def _score_pairs_flat(
    prep: "_Prepared",
    data: tuple,
    kg: _KeptGallery,
    topk: np.ndarray,
    num_ranked: int,
    out: _Outputs,
) -> None:
    """Score every query of one protocol from the "pairs" similarities, vectorised across queries
    (in chunks of bounded memory)."""
    flat, flat_dets, offsets = data
    gq = prep.galleries
    q_of_target = np.repeat(
        np.arange(gq.num_queries), np.diff(np.asarray(gq.target_splits, dtype=np.int64))
    )
    cand_query = q_of_target[prep.cand_target]
    try:
        cand_pos = K.pair_positions(
            gq.images,
            gq.image_splits,
            cand_query,
            np.asarray(gq.target_images, dtype=np.int64)[prep.cand_target],
            prep.cand_det,
            kg.det_starts,
            kg.det_counts,
        )
    except ValueError as exc:
        raise ValueError(f"protocol {gq.name!r}: {exc}") from None
    for qa, qb in K.flat_chunks(offsets, prep.cand_splits):
        e0, e1 = offsets[qa], offsets[qb]
        c0, c1 = prep.cand_splits[qa], prep.cand_splits[qb]
        res = K.score_flat(
            flat[e0:e1],
            flat_dets[e0:e1],
            offsets[qa : qb + 1] - e0,
            cand_pos[c0:c1] - e0,
            prep.cand_target[c0:c1],
            cand_query[c0:c1] - qa,
            prep.num_gt[qa:qb],
            topk,
            num_ranked,
        )
        (
            out.ap[qa:qb],
            out.hits[qa:qb],
            out.num_tp[qa:qb],
            out.ranked[qa:qb],
            out.ranked_scores[qa:qb],
            out.ranked_correct[qa:qb],
        ) = res


def _score_per_query(
    prepared: list,
    kg: _KeptGallery,
    q_emb: np.ndarray,
    topk: np.ndarray,
    num_ranked: int,
    outputs: list,
    nodes: Optional[list],
    cbgm: Optional[CBGMContext],
    pair_data: Optional[list] = None,
    chunk_size: int = 128,
) -> None:
    """Score query by query (NumPy over each query's gallery): the "matmul" path, and CBGM.

    Similarities come from ``pair_data`` ("pairs") or from one matrix product per chunk of queries
    against all kept detections ("matmul"), shared by all protocols.
    """
    num_queries = q_emb.shape[0]
    posmap = np.zeros(kg.num_kept, dtype=np.int64)  # position of a detection in the query's list
    for q0 in range(0, num_queries, chunk_size):
        q1 = min(q0 + chunk_size, num_queries)
        sims = q_emb[q0:q1] @ kg.emb.T if pair_data is None else None
        for q in range(q0, q1):
            q_nodes = nodes[q] if nodes is not None else None
            for pi, prep in enumerate(prepared):
                c0, c1 = prep.cand_splits[q], prep.cand_splits[q + 1]
                cand_det = prep.cand_det[c0:c1]
                if pair_data is not None:
                    flat, flat_dets, offsets = pair_data[pi]
                    s, dets = (
                        flat[offsets[q] : offsets[q + 1]],
                        flat_dets[offsets[q] : offsets[q + 1]],
                    )
                    if q_nodes is not None:
                        s = s.copy()
                else:
                    gq = prep.galleries
                    imgs = gq.images[gq.image_splits[q] : gq.image_splits[q + 1]]
                    dets = _ranges(kg.det_starts[imgs], kg.det_counts[imgs])
                    s = sims[q - q0][dets]
                if q_nodes is not None and dets.size:
                    K.cbgm_rerank(s, dets, q_nodes, kg.emb, kg.det_image, cbgm.k1)
                if not cand_det.size:
                    cs = s[:0]
                elif pair_data is None and q_nodes is None:
                    cs = sims[q - q0][cand_det]
                else:
                    posmap[dets] = np.arange(dets.size)
                    cs = s[posmap[cand_det]]
                ap, hits, n_tp, ranked, rscore, rcorr = K.score_query(
                    s,
                    dets,
                    cs,
                    cand_det,
                    prep.cand_target[c0:c1],
                    int(prep.num_gt[q]),
                    topk,
                    num_ranked,
                )
                out = outputs[pi]
                out.ap[q], out.hits[q], out.num_tp[q] = ap, hits, n_tp
                out.ranked[q, : ranked.size] = ranked
                out.ranked_scores[q, : ranked.size] = rscore
                out.ranked_correct[q, : ranked.size] = rcorr
