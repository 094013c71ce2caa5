"""Scoring kernels of the person-search metrics (internal to :mod:`.search_metrics`).

Array conventions are those of :mod:`.search_metrics`: "kept" detections are the gallery detections
above the score threshold, re-indexed 0..N-1 image-major; ``det_starts``/``det_counts`` give each
gallery image's range. A query's gallery detections ("dets") are the kept detections of its
images, and its similarities ("s") are aligned with them. Ties are broken towards the lower
detection index everywhere.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._blas import single_threaded_blas
from .csr import first_in_segments, ranges


class PairSimilarities(NamedTuple):
    """Similarities of each query with its own gallery's detections, query-major: query ``q``'s
    are ``sims[offsets[q]:offsets[q + 1]]``, of the kept detections ``dets[...]`` (same range)."""

    sims: np.ndarray
    dets: np.ndarray
    offsets: np.ndarray


class QueryScores(NamedTuple):
    """Scores of one query (:func:`score_query`) or of several (:func:`score_flat`, one row each).

    ``ap``: AP x recall; ``hits``: a true positive within each top-k; ``num_tp``: targets found;
    ``ranked``: the best kept detections (``-1`` padded in :func:`score_flat`), with their
    ``ranked_scores`` and whether each is a true positive (``ranked_correct``).
    """

    ap: Union[float, np.ndarray]
    hits: np.ndarray
    num_tp: Union[int, np.ndarray]
    ranked: np.ndarray
    ranked_scores: np.ndarray
    ranked_correct: np.ndarray


def pair_similarities(
    images: np.ndarray,
    image_splits: np.ndarray,
    q_emb: np.ndarray,
    emb: np.ndarray,
    det_starts: np.ndarray,
    det_counts: np.ndarray,
) -> PairSimilarities:
    """Similarities of each query with the kept detections of its own gallery images only.

    Args:
        images, image_splits: the queries' gallery images, CSR (``QueryGalleries.images``).
        q_emb: ``(Q, D)``; emb: ``(N, D)`` kept detection embeddings.

    Returns :class:`PairSimilarities`, query-major: query ``q``'s detections (its images in
    ``images`` order, each image's detections in order) are ``dets[offsets[q]:offsets[q+1]]``.

    Computed image-major: each gallery image's detections are multiplied once with the embeddings
    of all the queries whose gallery lists it (about 40 for CUHK-SYSU G100), so every detection
    embedding is read once and only the needed products are computed. This loops once over the
    distinct gallery images (not per query), with BLAS single-threaded (see ``_blas``).
    """
    images = np.asarray(images, dtype=np.int64)
    image_splits = np.asarray(image_splits, dtype=np.int64)
    num_queries = image_splits.size - 1
    q_of_pair = np.repeat(np.arange(num_queries), np.diff(image_splits))
    n = det_counts[images]
    cum = np.r_[0, np.cumsum(n)]
    dets = ranges(det_starts[images], n)
    sims = np.empty(dets.size, dtype=emb.dtype)
    if images.size:
        # Image-major order of the pairs; each image's block of products is written contiguously
        # into `by_image`, then one scatter puts everything in query-major order.
        order = np.argsort(images, kind="stable")
        sorted_images = images[order]
        queries_sorted = q_of_pair[order]
        bounds = np.flatnonzero(np.r_[True, sorted_images[1:] != sorted_images[:-1], True])
        group_images = sorted_images[bounds[:-1]]
        counts = det_counts[group_images]
        out_starts = np.r_[0, np.cumsum(np.diff(bounds) * counts)]
        by_image = np.empty(dets.size, dtype=emb.dtype)
        jobs = zip(
            bounds[:-1].tolist(),
            bounds[1:].tolist(),
            det_starts[group_images].tolist(),
            counts.tolist(),
            out_starts.tolist(),
        )
        with single_threaded_blas():
            for a, b, g0, c, o in jobs:
                if c:
                    block = q_emb[queries_sorted[a:b]] @ emb[g0 : g0 + c].T
                    by_image[o : o + block.size] = block.ravel()
        # Image-major element (pair k in sorted order, detection j) -> query-major position
        # cum[k] + j.
        sims[ranges(cum[order], n[order])] = by_image
    return PairSimilarities(sims, dets, cum[image_splits])


def cbgm_rerank(
    s: np.ndarray,
    dets: np.ndarray,
    nodes: np.ndarray,
    emb: np.ndarray,
    det_image: np.ndarray,
    k1: int,
) -> None:
    """CBGM in place on ``s`` (the similarities of ``dets``, the query's gallery detections).

    The images of the top-``k1`` detections are re-scored: a maximum-weight bipartite matching
    between ``nodes`` (query embedding first, then context persons) and the image's detections
    (weights: dot products); the detection matched to node 0 gets the largest weight among the
    matched pairs. At most ``k1`` images per query (Hungarian algorithm via SciPy; the reference's
    Kuhn-Munkres gives the same matching up to ties between optimal matchings).
    """

    top = top_positions(s, dets, k1)
    image_of = det_image[dets]
    for img in np.unique(image_of[top]):
        pos = np.flatnonzero(image_of == img)
        weights = nodes @ emb[dets[pos]].T
        qi, gi = linear_sum_assignment(weights, maximize=True)
        matched = qi == 0
        if matched.any():
            s[pos[gi[matched][0]]] = weights[qi, gi].max()


def top_positions(s: np.ndarray, dets: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores in ``s``, best first, ties to the lower ``dets``."""
    if s.size > k:
        kth = np.partition(s, s.size - k)[s.size - k]
        pos = np.flatnonzero(s >= kth)
    else:
        pos = np.arange(s.size)
    return pos[np.lexsort((dets[pos], -s[pos]))][:k]


def score_query(
    s: np.ndarray,
    dets: np.ndarray,
    cs: np.ndarray,
    cand_det: np.ndarray,
    cand_target: np.ndarray,
    num_gt: int,
    topk: np.ndarray,
    num_ranked: int,
) -> QueryScores:
    """AP x recall, top-k hits and the ranked list of one query over one gallery.

    ``s``: similarities of ``dets`` (the kept detections of the query's gallery). ``cs``: the
    similarities (same values as in ``s``) of ``cand_det``, the detections passing the IoU rule of
    a scored target row ``cand_target`` (contiguous per row, ascending detection index).
    """
    tp_det = cand_det[:0]
    ap = 0.0
    hits = np.zeros(topk.size, dtype=bool)
    if cs.size:
        new_group = np.empty(cs.size, dtype=bool)
        new_group[0] = True
        np.not_equal(cand_target[1:], cand_target[:-1], out=new_group[1:])
        if new_group.all():  # one candidate per target image (the usual case)
            tp_det, tp_score = cand_det, cs
        else:
            starts = np.flatnonzero(new_group)
            group_max = np.maximum.reduceat(cs, starts)
            group = np.cumsum(new_group) - 1
            first = first_in_segments(group, cs == group_max[group])
            tp_det, tp_score = cand_det[first], group_max

        # AP x recall = sum over distinct TP scores v of  #TP(v) * precision(>= v) / num_gt, i.e.
        # scikit-learn's sum over thresholds of (R_n - R_n-1) P_n, times recall = #TP / num_gt.
        v = np.sort(tp_score)
        if v.size == 1:
            ap = 1.0 / np.count_nonzero(s >= v[0]) / num_gt
        else:
            distinct = np.empty(v.size, dtype=bool)
            distinct[-1] = True
            np.not_equal(v[:-1], v[1:], out=distinct[:-1])
            last = np.flatnonzero(distinct)  # last index of each run of equal scores
            first = np.empty_like(last)
            first[0] = 0
            first[1:] = last[:-1] + 1
            n_tp_at = last - first + 1
            tp_ge = v.size - first  # TPs scoring >= each distinct value
            above_min = s[s >= v[0]]  # detections below every TP score do not matter
            above = np.bincount(
                np.searchsorted(v[last], above_min, side="right"), minlength=last.size + 1
            )
            n_ge = np.cumsum(above[::-1])[-2::-1]  # detections scoring >= each distinct value
            ap = float(np.sum(n_tp_at * tp_ge / n_ge) / num_gt)

        best = v[-1]
        rank = np.count_nonzero(s > best)
        if np.count_nonzero(s == best) > 1:  # ties: the lower detection index ranks first
            best_det = tp_det[tp_score == best].min()
            rank += np.count_nonzero((s == best) & (dets < best_det))
        hits = rank < topk

    pos = top_positions(s, dets, num_ranked)
    ranked = dets[pos]
    correct = (ranked[:, None] == tp_det[None, :]).any(axis=1)
    return QueryScores(ap, hits, tp_det.size, ranked, s[pos], correct)


def pair_positions(
    images: np.ndarray,
    image_splits: np.ndarray,
    cand_query: np.ndarray,
    cand_image: np.ndarray,
    cand_det: np.ndarray,
    det_starts: np.ndarray,
    det_counts: np.ndarray,
) -> np.ndarray:
    """Positions, in the query-major layout of :func:`pair_similarities`, of candidate detections
    ``cand_det`` (of image ``cand_image``, for query ``cand_query``); raises ``ValueError`` when a
    candidate's image is not among its query's images."""
    images = np.asarray(images, dtype=np.int64)
    image_splits = np.asarray(image_splits, dtype=np.int64)
    num_queries = image_splits.size - 1
    num_images = det_counts.size
    if cand_det.size and not images.size:
        raise ValueError("a scored target image is not among its query's images")
    starts = np.cumsum(det_counts[images]) - det_counts[images]  # of each pair's block
    keys = np.repeat(np.arange(num_queries), np.diff(image_splits)) * (num_images + 1) + images
    order = np.argsort(keys, kind="stable")
    wanted = cand_query * (num_images + 1) + cand_image
    found = np.searchsorted(keys[order], wanted)
    pair = order[np.minimum(found, max(order.size - 1, 0))]
    if cand_det.size and not np.array_equal(keys[pair], wanted):
        raise ValueError("a scored target image is not among its query's images")
    return starts[pair] + (cand_det - det_starts[cand_image])


def score_flat(
    s: np.ndarray,
    dets: np.ndarray,
    offsets: np.ndarray,
    cand_pos: np.ndarray,
    cand_target: np.ndarray,
    cand_query: np.ndarray,
    num_gt: np.ndarray,
    topk: np.ndarray,
    num_ranked: int,
) -> QueryScores:
    """:func:`score_query` for many queries at once, without a Python loop.

    ``s``/``dets``: the queries' similarities and detections, query-major, query ``q`` at
    ``offsets[q]:offsets[q+1]`` (local query indices 0..Q-1). ``cand_pos``: candidate positions
    in ``s``, grouped by target row ``cand_target`` (sorted), of local query ``cand_query``.
    Same semantics and tie rules as :func:`score_query`; memory grows with the number of
    true positives times the gallery length, so callers pass chunks of queries.
    """
    num_queries = offsets.size - 1
    seg_len = np.diff(offsets)
    ap = np.zeros(num_queries)
    hits = np.zeros((num_queries, topk.size), dtype=bool)
    n_tp = np.zeros(num_queries, dtype=np.int64)
    ranked = np.full((num_queries, num_ranked), -1, dtype=np.int64)
    rscore = np.full((num_queries, num_ranked), np.nan)
    rcorr = np.zeros((num_queries, num_ranked), dtype=bool)
    is_tp = np.zeros(s.size, dtype=bool)

    if cand_pos.size:
        cs = s[cand_pos]
        new_group = np.empty(cs.size, dtype=bool)
        new_group[0] = True
        np.not_equal(cand_target[1:], cand_target[:-1], out=new_group[1:])
        group = np.cumsum(new_group) - 1
        group_max = np.maximum.reduceat(cs, np.flatnonzero(new_group))
        first = first_in_segments(group, cs == group_max[group])  # lowest detection on ties
        tp_pos, tp_v, tp_q = cand_pos[first], group_max, cand_query[first]
        tp_det = dets[tp_pos]
        is_tp[tp_pos] = True
        n_tp = np.bincount(tp_q, minlength=num_queries)

        # Per TP t: detections of its query scoring >= v_t, and TPs of its query scoring >= v_t;
        # AP x recall = sum_t tp_ge(t) / n_ge(t) / num_gt (tied TPs share both counts).
        length = seg_len[tp_q]
        idx = ranges(offsets[tp_q], length)
        seg_starts = np.cumsum(length) - length
        n_ge = np.add.reduceat(s[idx] >= np.repeat(tp_v, length), seg_starts)
        tp_first = np.cumsum(n_tp) - n_tp
        k = n_tp[tp_q]
        jdx = ranges(tp_first[tp_q], k)
        tp_ge = np.add.reduceat(tp_v[jdx] >= np.repeat(tp_v, k), np.cumsum(k) - k)
        ap_sum = np.bincount(tp_q, weights=tp_ge / n_ge, minlength=num_queries)
        ap = np.divide(ap_sum, num_gt, out=np.zeros(num_queries), where=num_gt > 0)

        # Rank of each query's best TP (ties: lower detection index first).
        order = np.lexsort((tp_det, -tp_v, tp_q))
        best = order[np.r_[True, tp_q[order][1:] != tp_q[order][:-1]]]
        bq = tp_q[best]
        length = seg_len[bq]
        idx = ranges(offsets[bq], length)
        bv, bd = np.repeat(tp_v[best], length), np.repeat(tp_det[best], length)
        sv = s[idx]
        before = (sv > bv) | ((sv == bv) & (dets[idx] < bd))
        rank = np.add.reduceat(before, np.cumsum(length) - length)
        hits[bq] = rank[:, None] < topk[None, :]

    # Ranked lists: the num_ranked-th score of each query from a padded matrix, then a sort of the
    # few detections at or above it.
    max_len = int(seg_len.max()) if num_queries else 0
    if max_len:
        row = np.repeat(np.arange(num_queries), seg_len)
        padded = np.full((num_queries, max_len), -np.inf, dtype=s.dtype)
        padded[row, np.arange(s.size) - offsets[row]] = s
        r = min(num_ranked, max_len)
        kth = np.partition(padded, max_len - r, axis=1)[:, max_len - r]
        sel = np.flatnonzero(s >= kth[row])
        sel = sel[np.lexsort((dets[sel], -s[sel], row[sel]))]
        q_sel = row[sel]
        place = np.arange(sel.size) - np.searchsorted(q_sel, q_sel, side="left")
        keep = place < num_ranked
        sel, q_sel, place = sel[keep], q_sel[keep], place[keep]
        ranked[q_sel, place] = dets[sel]
        rscore[q_sel, place] = s[sel]
        rcorr[q_sel, place] = is_tp[sel]
    return QueryScores(ap, hits, n_tp, ranked, rscore, rcorr)


def flat_chunks(offsets: np.ndarray, cand_splits: np.ndarray, budget: int = 1 << 23) -> list:
    """Query ranges whose expanded arrays in :func:`score_flat` stay within ``budget`` elements."""
    weight = np.diff(offsets) * (np.diff(cand_splits) + 3)
    cum = np.cumsum(weight)
    bounds, q = [0], 0
    num_queries = offsets.size - 1
    while q < num_queries:
        base = cum[q - 1] if q else 0
        nxt = int(np.searchsorted(cum, base + budget, side="right"))
        q = max(nxt, q + 1)
        bounds.append(min(q, num_queries))
    return list(zip(bounds[:-1], bounds[1:]))
