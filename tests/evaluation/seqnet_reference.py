"""A deliberately plain, loop-per-query/per-image implementation of the person-search protocol,
written from the protocol's definition (``docs/protocol.md``), to check the vectorised
core against. Nothing here is imported from ``stl_search``.

Data model (plain Python):
    image   = {"dets": [(box, score, emb), ...], "gts": [(box, identity), ...], "camera": int}
    query   = {"emb": vector, "identity": int, "image": gallery index or -1, "camera": int,
               "listing": [(gallery index or -1, box or None), ...]   # explicit galleries only
               "context": [emb, ...]}                                 # CBGM only
Detections are numbered globally in image order (image 0's first, then image 1's, ...), which is
also the tie-break order.
"""

from __future__ import annotations

import itertools

import numpy as np


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ap_definition(labels, scores) -> float:
    """sum over distinct thresholds t (descending) of (R(t) - R(previous)) * P(t)."""
    npos = sum(1 for y in labels if y)
    if npos == 0:
        return 0.0
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        sel = [y for y, s in zip(labels, scores) if s >= t]
        tp = sum(1 for y in sel if y)
        recall = tp / npos
        total += (recall - prev_recall) * (tp / len(sel))
        prev_recall = recall
    return total


def global_ids(images):
    ids, k = [], 0
    for im in images:
        ids.append(list(range(k, k + len(im["dets"]))))
        k += len(im["dets"])
    return ids


def listing_for(query, images, mode):
    """The query's gallery listings [(image, target box or None)] in file / data set order."""
    if mode == "explicit":
        return list(query["listing"])
    out = []
    for g, im in enumerate(images):
        if g == query["image"]:
            continue
        if mode == "multi_view" and im["camera"] == query["camera"]:
            continue
        boxes = [b for b, ident in im["gts"] if ident == query["identity"]]
        out.append((g, boxes[0] if boxes else None))
    return out


def _best_matching(weights):
    """Max-weight matching of size min(m, n) by brute force: list of (row, col)."""
    m, n = len(weights), len(weights[0])
    best, best_pairs = -np.inf, []
    if m <= n:
        for cols in itertools.permutations(range(n), m):
            total = sum(weights[i][c] for i, c in enumerate(cols))
            if total > best:
                best, best_pairs = total, list(enumerate(cols))
    else:
        for rows in itertools.permutations(range(m), n):
            total = sum(weights[r][j] for j, r in enumerate(rows))
            if total > best:
                best, best_pairs = total, [(r, j) for j, r in enumerate(rows)]
    return best_pairs


def search_one(query, images, mode, score_thresh=0.5, topk=(1, 5, 10), cbgm=None):
    """Returns (ap, hits, num_tp, num_gt, ranked [(gid, score, correct)] best first)."""
    gids = global_ids(images)
    listing = listing_for(query, images, mode)
    num_gt = sum(1 for _, box in listing if box is not None)
    q = np.asarray(query["emb"], dtype=np.float64)

    # The distinct gallery images (first listing wins), their kept detections and similarities.
    searched = []  # (image, box of first listing)
    seen = set()
    for g, box in listing:
        if g in seen:
            continue
        seen.add(g)
        if g >= 0:
            searched.append((g, box))
    sims = {}
    for g, _ in searched:
        for k, (dbox, score, emb) in enumerate(images[g]["dets"]):
            if score >= score_thresh:
                sims[gids[g][k]] = float(np.dot(np.asarray(emb, dtype=np.float64), q))

    if cbgm is not None and sims:
        k1, k2 = cbgm
        top = sorted(sims, key=lambda d: (-sims[d], d))[:k1]
        nodes = [q] + [np.asarray(c, dtype=np.float64) for c in query.get("context", [])][: k2 - 1]
        top_images = sorted({g for g, _ in searched for d in top if d in gids[g]})
        if len(nodes) > 1:
            for g in top_images:
                dets = [
                    (gids[g][k], emb)
                    for k, (_, s, emb) in enumerate(images[g]["dets"])
                    if s >= score_thresh
                ]
                weights = [
                    [float(np.dot(nd, np.asarray(e, dtype=np.float64))) for _, e in dets]
                    for nd in nodes
                ]
                pairs = _best_matching(weights)
                for r, c in pairs:
                    if r == 0:
                        sims[dets[c][0]] = max(weights[rr][cc] for rr, cc in pairs)

    tps = set()
    for g, box in searched:
        if box is None:
            continue
        w, h = box[2] - box[0], box[3] - box[1]
        thr = min(0.5, w * h / ((w + 10) * (h + 10)))
        best = None
        for k, (dbox, score, _) in enumerate(images[g]["dets"]):
            d = gids[g][k]
            if d in sims and iou(dbox, box) >= thr and (best is None or sims[d] > sims[best]):
                best = d
        if best is not None:
            tps.add(best)

    order = sorted(sims, key=lambda d: (-sims[d], d))
    labels = [d in tps for d in order]
    scores = [sims[d] for d in order]
    ap = ap_definition(labels, scores) * len(tps) / num_gt if tps else 0.0
    hits = [any(labels[:k]) for k in topk]
    ranked = [(d, sims[d], d in tps) for d in order[:10]]
    return ap, hits, len(tps), num_gt, ranked


def detection(images, score_thresh=0.5, iou_thresh=0.5, labeled_only=False):
    """Returns (ap, recall) with SeqNet's eval_detection matching (IoUs rounded to float32)."""
    labels, scores = [], []
    count_gt = count_tp = 0
    for im in images:
        gts = [b for b, ident in im["gts"] if (ident >= 0 or not labeled_only)]
        if labeled_only and not gts:
            continue
        dets = [(b, s) for b, s, _ in im["dets"] if s >= score_thresh]
        count_gt += len(gts)
        if not dets:
            continue
        ious = [[float(np.float32(iou(g, d[0]))) for d in dets] for g in gts]
        for j, (_, s) in enumerate(dets):
            matched = False
            if gts:
                col = [ious[i][j] for i in range(len(gts))]
                i_best = col.index(max(col))
                row = ious[i_best]
                j_best = row.index(max(row))
                matched = col[i_best] >= iou_thresh and j_best == j
            labels.append(matched)
            scores.append(s)
            count_tp += int(matched)
    if count_gt == 0:
        return 0.0, 0.0
    recall = count_tp / count_gt
    return ap_definition(labels, scores) * recall, recall
