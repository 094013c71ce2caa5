"""The synthetic evaluation inputs of ``eval_speed.py``: features and protocols at the real sizes.

Held apart from the timing so that the driver reads as what it times: every call here builds
what the evaluator holds in memory after inference, and none of it is timed (the driver prints
how long generation took). Seeded random 2048-d features, L2-normalised; the labeled persons of
one identity share a prototype, so that true matches rank high:
    :func:`make_cuhk`: CUHK-SYSU, 6,978 gallery images, 2,900 queries, TestG100-like galleries
                       (100 images, positives first, with the real files' quirks: 2 queries list
                       their own image, 4 list one twice);
    :func:`make_prw`:  PRW, 6,112 gallery frames over 6 cameras, 2,057 queries ("all" gallery).
Both draw from the one generator the driver passes, in the order it calls them.

Needs numpy and ``stl_search`` importable: ``eval_speed.py`` puts the repository root on
``sys.path`` and sets the BLAS thread variables before it imports this module.
"""

from __future__ import annotations

import numpy as np

from stl_search.evaluation import GalleryDetections

DIM = 2048


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_scenes(rng, num_images, appearances, unlabeled_per_image, extra_dets):
    """Scenes with ground truth and detections.

    appearances: list over identities of the image indices where the identity appears.
    Returns per-image gt lists [(box int xyxy, identity)], detections (boxes, scores, embeddings,
    splits) and identity prototypes.
    """
    gts = [[] for _ in range(num_images)]
    for ident, imgs in enumerate(appearances):
        for g in imgs:
            gts[g].append(ident)
    for g in range(num_images):
        gts[g] += [-1] * int(rng.integers(unlabeled_per_image[0], unlabeled_per_image[1] + 1))
    protos = _normalize(rng.standard_normal((len(appearances), DIM), dtype=np.float32))
    scene_gts, det_boxes, det_embs, counts = [], [], [], []
    for g in range(num_images):
        persons = []
        for ident in gts[g]:
            w, h = int(rng.integers(15, 120)), 0
            h = int(w * rng.uniform(2.0, 3.0))
            x, y = int(rng.integers(0, 1800)), int(rng.integers(0, 900))
            persons.append(([x, y, x + w, y + h], ident))
        scene_gts.append(persons)
        n = 0
        for box, ident in persons:
            if rng.random() < 0.9:
                w, h = box[2] - box[0], box[3] - box[1]
                det_boxes.append(
                    [
                        box[0] + rng.normal(0, 0.05 * w),
                        box[1] + rng.normal(0, 0.05 * h),
                        box[2] + rng.normal(0, 0.05 * w),
                        box[3] + rng.normal(0, 0.05 * h),
                    ]
                )
                det_embs.append(protos[ident] if ident >= 0 else None)
                n += 1
        for _ in range(int(rng.poisson(extra_dets))):
            x, y = rng.uniform(0, 1800), rng.uniform(0, 900)
            det_boxes.append([x, y, x + 40, y + 100])
            det_embs.append(None)
            n += 1
        counts.append(n)
    num_dets = len(det_boxes)
    emb = rng.standard_normal((num_dets, DIM), dtype=np.float32)
    for i, p in enumerate(det_embs):  # a labeled person: its identity's prototype + noise
        if p is not None:
            emb[i] = emb[i] * np.float32(0.8 / np.sqrt(DIM)) + p
    emb = _normalize(emb).astype(np.float32)
    gallery = GalleryDetections(
        boxes=np.asarray(det_boxes, dtype=np.float32),
        scores=rng.uniform(0.5, 1.0, num_dets).astype(np.float32),
        embeddings=emb,
        splits=np.r_[0, np.cumsum(counts)].astype(np.int64),
    )
    return scene_gts, gallery, protos


def query_embeddings(rng, protos, identities):
    noise = rng.standard_normal((len(identities), DIM), dtype=np.float32) * np.float32(
        0.8 / np.sqrt(DIM)
    )
    return _normalize(protos[identities] + noise).astype(np.float32)


def make_cuhk(rng, num_images=6978, num_queries=2900, gallery_size=100):
    appearances = [
        list(rng.choice(num_images, int(rng.integers(2, 5)), replace=False))
        for _ in range(num_queries)
    ]
    scene_gts, gallery, protos = make_scenes(rng, num_images, appearances, (2, 6), 2.3)
    queries, listings = [], []
    for i, imgs in enumerate(appearances):
        qimg = int(imgs[0])
        qbox = next(b for b, ident in scene_gts[qimg] if ident == i)
        holders = set(int(g) for g in imgs)
        pos = [int(g) for g in imgs[1:]]
        neg = []
        while len(neg) < gallery_size - len(pos):
            g = int(rng.integers(num_images))
            if g not in holders and g not in neg:
                neg.append(g)
        listing = [(g, next(b for b, ident in scene_gts[g] if ident == i)) for g in pos] + [
            (g, None) for g in neg
        ]
        if i in (5, 6):  # the query's own image in its gallery (TestG100 has 2)
            listing[-1] = (qimg, qbox)
        if i in (7, 8, 9, 10):  # an image listed twice (TestG100 has 4)
            listing[-1] = listing[0]
        queries.append({"image": qimg, "identity": i, "box": qbox})
        listings.append(listing)
    q_emb = query_embeddings(rng, protos, np.arange(num_queries))
    return {
        "scene_gts": scene_gts,
        "gallery": gallery,
        "queries": queries,
        "listings": listings,
        "q_emb": q_emb,
    }


def make_prw(rng, num_images=6112, num_queries=2057, num_ids=450, cameras=6):
    cams = rng.integers(1, cameras + 1, num_images)
    appearances = [
        list(rng.choice(num_images, int(rng.integers(12, 40)), replace=False))
        for _ in range(num_ids)
    ]
    scene_gts, gallery, protos = make_scenes(rng, num_images, appearances, (1, 4), 3.1)
    queries = []
    for k in range(num_queries):
        ident = k % num_ids
        qimg = int(appearances[ident][(k // num_ids) % len(appearances[ident])])
        qbox = next(b for b, i in scene_gts[qimg] if i == ident)
        queries.append({"image": qimg, "identity": ident, "box": qbox, "camera": int(cams[qimg])})
    q_emb = query_embeddings(rng, protos, np.array([q["identity"] for q in queries]))
    return {
        "scene_gts": scene_gts,
        "gallery": gallery,
        "queries": queries,
        "cams": cams,
        "q_emb": q_emb,
    }
