"""Cases for the metric-core tests: hand-written and random galleries in the evaluator's arrays
(``GalleryDetections``, ground truth, protocols), and the comparison of the vectorised search
metrics with the plain loop reference (``seqnet_reference.py``) query by query."""

from __future__ import annotations

import numpy as np
import pytest

from stl_search import evaluation as M

from . import seqnet_reference as ref


def to_gallery(images, dim):
    boxes, scores, embs, counts = [], [], [], []
    for im in images:
        counts.append(len(im["dets"]))
        for b, s, e in im["dets"]:
            boxes.append(b)
            scores.append(s)
            embs.append(e)
    return M.GalleryDetections(
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        scores=np.array(scores, dtype=np.float64),
        embeddings=np.array(embs, dtype=np.float64).reshape(-1, dim),
        splits=np.r_[0, np.cumsum(counts)].astype(np.int64),
    )


def to_gt(images):
    boxes, idents, counts = [], [], []
    for im in images:
        counts.append(len(im["gts"]))
        for b, i in im["gts"]:
            boxes.append(b)
            idents.append(i)
    return (
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        np.array(idents, dtype=np.int64),
        np.r_[0, np.cumsum(counts)].astype(np.int64),
    )


def protocol_for(mode, images, queries):
    if mode == "explicit":
        counts = [len(q["listing"]) for q in queries]
        imgs, tl, tb, i = [], [], [], 0
        for q in queries:
            for g, box in q["listing"]:
                imgs.append(g)
                if box is not None:
                    tl.append(i)
                    tb.append(box)
                i += 1
        return M.explicit_galleries(
            np.r_[0, np.cumsum(counts)], np.array(imgs), np.array(tl), np.array(tb).reshape(-1, 4)
        )
    gt_boxes, gt_ids, gt_splits = to_gt(images)
    return M.prw_galleries(
        np.array([q["image"] for q in queries]),
        np.array([q["identity"] for q in queries]),
        np.array([q["camera"] for q in queries]),
        np.array([im["camera"] for im in images]),
        gt_ids,
        gt_boxes,
        gt_splits,
        mode=mode,
    )


def rand_box(rng, small):
    w = rng.uniform(3, 12) if small else rng.uniform(20, 60)
    h = rng.uniform(4, 16) if small else rng.uniform(40, 120)
    x, y = rng.uniform(0, 200), rng.uniform(0, 200)
    return [x, y, x + w, y + h]


def jitter(rng, box, amount):
    w, h = box[2] - box[0], box[3] - box[1]
    return [
        box[0] + rng.normal(0, amount * w),
        box[1] + rng.normal(0, amount * h),
        box[2] + rng.normal(0, amount * w),
        box[3] + rng.normal(0, amount * h),
    ]


def rand_emb(rng, dim, integer):
    if integer:  # small integers: every dot product is exact, so ties stay ties
        return rng.integers(-1, 2, dim).astype(np.float64)
    v = rng.normal(size=dim)
    return v / np.linalg.norm(v)


def random_case(rng, n_images=9, n_queries=7, dim=5, integer=False, n_ids=4):
    images = []
    for _ in range(n_images):
        small = rng.random() < 0.3
        gts = []
        for _ in range(rng.integers(0, 4)):
            gts.append((rand_box(rng, small), int(rng.choice(list(range(n_ids)) + [-1]))))
        if gts and rng.random() < 0.2:  # the same identity twice in one image
            gts.append((rand_box(rng, small), gts[0][1]))
        dets = []
        below_all = rng.random() < 0.15
        for _ in range(rng.integers(0, 6)):
            if gts and rng.random() < 0.7:
                box = jitter(rng, gts[rng.integers(len(gts))][0], rng.choice([0.02, 0.1, 0.25]))
            else:
                box = rand_box(rng, small)
            score = 0.3 if below_all else float(rng.choice([0.3, 0.5, 0.7, 0.9, 0.9]))
            dets.append((box, score, rand_emb(rng, dim, integer)))
        images.append({"dets": dets, "gts": gts, "camera": int(rng.integers(1, 4))})
    queries = []
    for _ in range(n_queries):
        ident = int(rng.integers(0, n_ids + 1))  # n_ids: an identity seen nowhere
        holders = [g for g, im in enumerate(images) if any(i == ident for _, i in im["gts"])]
        r = rng.random()
        img = (
            int(rng.choice(holders))
            if holders and r < 0.7
            else (-1 if r > 0.9 else int(rng.integers(n_images)))
        )
        listing = []
        for _ in range(rng.integers(0, n_images + 3)):
            g = (
                int(rng.integers(-1, n_images))
                if rng.random() < 0.1
                else int(rng.integers(n_images))
            )
            boxes = [b for b, i in images[g]["gts"] if i == ident] if g >= 0 else []
            listing.append((g, boxes[0] if boxes else None))
        if listing and rng.random() < 0.3:  # duplicate listing
            listing.append(listing[int(rng.integers(len(listing)))])
        queries.append(
            {
                "emb": rand_emb(rng, dim, integer),
                "identity": ident,
                "image": img,
                "camera": images[img]["camera"] if img >= 0 else 0,
                "listing": listing,
            }
        )
    return images, queries


def compare(
    images, queries, mode, dim, strategy="auto", topk=(1, 5, 10), cbgm=None, score_thresh=0.5
):
    gal = to_gallery(images, dim)
    gq = protocol_for(mode, images, queries)
    gq.validate(len(images))
    q_emb = np.array([q["emb"] for q in queries], dtype=np.float64).reshape(-1, dim)
    res = M.search_metrics(
        gal, q_emb, gq, topk=topk, strategy=strategy, cbgm=cbgm, score_thresh=score_thresh
    )
    for i, q in enumerate(queries):
        ap, hits, ntp, ngt, ranked = ref.search_one(
            q,
            images,
            mode,
            score_thresh=score_thresh,
            topk=topk,
            cbgm=None if cbgm is None else (cbgm.k1, cbgm.k2),
        )
        assert res.num_gt[i] == ngt
        assert res.num_tp[i] == ntp, (mode, i)
        assert res.ap[i] == pytest.approx(ap, abs=1e-6), (mode, i)
        assert list(res.hits[i]) == hits, (mode, i)
        got = [
            (int(d), float(s), bool(c))
            for d, s, c in zip(res.ranked_dets[i], res.ranked_scores[i], res.ranked_correct[i])
            if d >= 0
        ]
        assert [g[0] for g in got] == [r[0] for r in ranked], (mode, i)
        assert [g[2] for g in got] == [r[2] for r in ranked]
        np.testing.assert_allclose([g[1] for g in got], [r[1] for r in ranked], atol=1e-6)
    return res


def emb_with_sim(sim, axis, dim):
    """A unit vector whose dot product with e0 is exactly `sim`."""
    v = np.zeros(dim)
    v[0] = sim
    v[axis] = np.sqrt(1 - sim * sim)
    return v
