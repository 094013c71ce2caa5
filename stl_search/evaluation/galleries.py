"""The inputs of the search metrics: gallery detections, per-query galleries, CBGM context.

:class:`GalleryDetections` holds every gallery detection (CSR by image); :class:`QueryGalleries`
says, per query, which gallery images are searched and where its target is, built by
:func:`explicit_galleries` (CUHK-SYSU ``TestG*.mat`` lists) or :func:`prw_galleries` (PRW "all" /
"multi_view") with the reference's handling of duplicates; :class:`CBGMContext` holds the query
frames' context persons for CBGM re-ranking. Pure NumPy; the protocol is described in
``../../docs/protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .csr import check_splits, ranges
from .detection import matched_box_iou

__all__ = [
    "GalleryDetections",
    "QueryGalleries",
    "explicit_galleries",
    "prw_galleries",
    "CBGMContext",
    "query_context_from_gallery",
]


@dataclass(frozen=True)
class GalleryDetections:
    """All gallery detections, image-major.

    Attributes:
        boxes: ``(N, 4)`` XYXY, original image frame.
        scores: ``(N,)`` detection confidences.
        embeddings: ``(N, D)`` L2-normalised (float16/32/64; float16 is computed in float32).
        splits: ``(I + 1,)`` CSR: the detections of gallery image ``i`` are rows
            ``splits[i]:splits[i+1]``.
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
        check_splits(self.splits, n, "gallery")

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
        check_splits(self.image_splits, len(self.images), "images")
        check_splits(self.target_splits, len(self.target_images), "targets")
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
    listing_splits = check_splits(listing_splits, listing_images.size, "listings")
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
    gt_splits = check_splits(gt_splits, gt_identities.size, "gt")
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
    rows = ranges(lo, hi - lo)
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
        check_splits(self.context_splits, len(self.context_embeddings), "context")
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
            matched_box_iou(gallery.boxes[r], np.broadcast_to(query_boxes[q], (r.size, 4)))
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
