#!/usr/bin/env python
"""Scoring speed of the person-search evaluation at the real data sets' sizes.

    python benchmarks/eval_speed.py [--threads 2] [--datasets cuhk prw] [--loop-queries-prw 200]

Features are generated once (seeded random, 2048-d, L2-normalised; identities share a prototype
so that true matches rank high) and held in memory, as the evaluator holds them after inference:
    CUHK-SYSU: 6,978 gallery images, 2,900 queries, TestG100-like galleries (100 images,
               positives first, with the real files' quirks: 2 queries list their own image,
               4 list one twice);
    PRW:       6,112 gallery frames over 6 cameras, 2,057 queries, the "all" gallery;
    ~7 detections per image, all above the 0.5 score threshold.

Two implementations score the same features:
    vectorised: ``stl_search.evaluation`` (protocol arrays + ``search_metrics``);
    loop:       a port of SeqNet's ``eval_search_cuhk`` / ``eval_search_prw`` written after its
                structure (per query, per gallery listing, in Python, on the data structures it
                reads: loadmat records for CUHK-SYSU, per-frame dicts for PRW); AP by
                scikit-learn as in the reference when importable, else by a replica of
                scikit-learn's algorithm without its input checks (faster: a smaller ratio).
Timed: from in-memory features and protocol to per-query AP / top-k, for both (the reference's
score filter included, file loading excluded). Wall and process CPU time are printed: on a
shared machine CPU time is the steadier figure. The loop runs on all queries or on the first
``--loop-queries-*`` ones; then its per-query loop is extrapolated linearly to all queries (the
output says so). Both are checked to agree (AP, top-k) on the queries the loop ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args():
    # Before numpy is imported (the thread variables), so no stl_search.utils.cli.HelpFormatter.
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (none: all cores)")
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=("cuhk", "prw"),
        default=["cuhk", "prw"],
        help="the evaluation protocols (gallery and query sizes) to time (default: %(default)s)",
    )
    p.add_argument(
        "--loop-queries-cuhk",
        type=int,
        default=0,
        help="queries for the loop (0: all; default: %(default)s)",
    )
    p.add_argument(
        "--loop-queries-prw",
        type=int,
        default=200,
        help="queries for the loop (0: all; default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the features (default: %(default)s)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="vectorised runs, median reported (default: %(default)s)",
    )
    return p.parse_args()


ARGS = parse_args()
if ARGS.threads:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from machine import cpu_line  # noqa: E402 (benchmarks/machine.py, next to this script)

from stl_search import evaluation as M  # noqa: E402

DIM = 2048
TOPK = (1, 5, 10)

try:  # the reference's own AP
    from sklearn.metrics import average_precision_score

    AP_IMPL = "scikit-learn"
except ImportError:  # pragma: no cover - depends on the environment
    AP_IMPL = "replica of scikit-learn's algorithm"

    def average_precision_score(y_true, y_score):
        y_true = np.asarray(y_true) == 1
        y_score = np.asarray(y_score)
        order = np.argsort(y_score, kind="mergesort")[::-1]
        y_score, y_true = y_score[order], y_true[order]
        distinct = np.where(np.diff(y_score))[0]
        threshold_idxs = np.r_[distinct, y_true.size - 1]
        tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
        fps = 1 + threshold_idxs - tps
        precision = tps / (tps + fps)
        recall = tps / tps[-1]
        precision = np.r_[precision[::-1], 1]
        recall = np.r_[recall[::-1], 0]
        return -np.sum(np.diff(recall) * np.array(precision)[:-1])


# ------------------------------------------------------------------------------ synthetic data
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
    gallery = M.GalleryDetections(
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


# ------------------------------------------------------------------------------ vectorised
def vectorised_cuhk(data):
    # The TestG lists as flat arrays (what the evaluator reads from the query dicts); like the
    # loop's protocol records, this conversion is not timed.
    listings = data["listings"]
    counts = [len(lst) for lst in listings]
    images = np.array([g for lst in listings for g, _ in lst], dtype=np.int64)
    flags = np.array([b is not None for lst in listings for _, b in lst])
    boxes = np.array([b for lst in listings for _, b in lst if b is not None], dtype=np.float64)
    c0 = time.process_time()
    t0 = time.perf_counter()
    gq = M.explicit_galleries(np.r_[0, np.cumsum(counts)], images, np.flatnonzero(flags), boxes)
    t1 = time.perf_counter()
    res = M.search_metrics(data["gallery"], data["q_emb"], gq, topk=TOPK)
    res.extras["cpu_s"] = time.process_time() - c0
    return res, t1 - t0, time.perf_counter() - t1


def vectorised_prw(data):
    sg = data["scene_gts"]
    gt_boxes = np.array([b for persons in sg for b, _ in persons], dtype=np.float64)
    gt_ids = np.array([i for persons in sg for _, i in persons], dtype=np.int64)
    gt_splits = np.r_[0, np.cumsum([len(p) for p in sg])]
    qs = data["queries"]
    q_img, q_id, q_cam = (np.array([q[k] for q in qs]) for k in ("image", "identity", "camera"))
    c0 = time.process_time()
    t0 = time.perf_counter()
    gq = M.prw_galleries(q_img, q_id, q_cam, data["cams"], gt_ids, gt_boxes, gt_splits, mode="all")
    t1 = time.perf_counter()
    res = M.search_metrics(data["gallery"], data["q_emb"], gq, topk=TOPK)
    res.extras["cpu_s"] = time.process_time() - c0
    return res, t1 - t0, time.perf_counter() - t1


# ----------------------------------------------------------------- loop (SeqNet's structure)
def iou_scalar(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter * 1.0 / union


def seqnet_inputs(data):
    """The reference's inputs: per image an (n, 5) [box, score] and an (n, D) feature array."""
    gal = data["gallery"]
    dets, feats = [], []
    for i in range(gal.num_images):
        a, b = gal.splits[i], gal.splits[i + 1]
        dets.append(np.hstack([gal.boxes[a:b], gal.scores[a:b, None]]))
        feats.append(gal.embeddings[a:b])
    return dets, feats


def name_to_det_feat_map(names, gallery_dets, gallery_feats, det_thresh=0.5):
    """The reference's first step (timed with it): detections above the threshold, by image name."""
    name_to_det_feat = {}
    for name, det, feat in zip(names, gallery_dets, gallery_feats):
        if len(det) != 0:
            scores = det[:, 4].ravel()
            inds = np.where(scores >= det_thresh)[0]
            if len(inds) > 0:
                name_to_det_feat[name] = (det[inds], feat[inds])
    return name_to_det_feat


def loadmat_like_protocol(data, names):
    """The ``TestG100`` record exactly as ``scipy.io.loadmat(...)["TestG100"].squeeze()``
    returns it: a struct array with fields Query (1x1 struct: imname, idlocate, ishard) and
    Gallery (1xN struct: imname, idlocate, ishard; idlocate x, y, w, h, empty 1x0 where the
    target is absent)."""
    fields = [("imname", "O"), ("idlocate", "O"), ("ishard", "O")]
    protoc = np.empty(len(data["queries"]), dtype=[("Query", "O"), ("Gallery", "O")])
    for i, (q, lst) in enumerate(zip(data["queries"], data["listings"])):
        b = q["box"]
        query = np.empty((1, 1), dtype=fields)
        query[0, 0] = (
            np.array([names[q["image"]]]),
            np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]]], float),
            np.array([[0]]),
        )
        gallery = np.empty((1, len(lst)), dtype=fields)
        for j, (g, box) in enumerate(lst):
            loc = (
                np.zeros((1, 0))
                if box is None
                else np.array([[box[0], box[1], box[2] - box[0], box[3] - box[1]]], float)
            )
            gallery[0, j] = (np.array([names[g]]), loc, np.array([[0]]))
        protoc[i] = (query, gallery)
    return protoc


def loop_cuhk(data, n):
    """``eval_search_cuhk(gallery_size=100, cbgm=False)``, step by step, on loadmat-like records."""
    names = [f"s{i}.jpg" for i in range(data["gallery"].num_images)]
    gallery_dets, gallery_feats = seqnet_inputs(data)
    protoc = loadmat_like_protocol(data, names)
    aps, accs, results = [], [], []
    c0 = time.process_time()
    t0 = time.perf_counter()
    name_to_det_feat = name_to_det_feat_map(names, gallery_dets, gallery_feats)
    setup = (time.perf_counter() - t0, time.process_time() - c0)
    for i in range(n):
        y_true, y_score, imgs, rois = [], [], [], []
        count_gt, count_tp = 0, 0
        feat_q = data["q_emb"][i].ravel()
        query_imname = str(protoc["Query"][i]["imname"][0, 0][0])
        query_roi = protoc["Query"][i]["idlocate"][0, 0][0].astype(np.int32)
        query_roi[2:] += query_roi[:2]
        query_gt = []
        tested = set([query_imname])
        name2sim, name2gt, sims, imgs_cbgm = {}, {}, [], []
        for item in protoc["Gallery"][i].squeeze():
            gallery_imname = str(item[0][0])
            gt = item[1][0].astype(np.int32)
            count_gt += gt.size > 0
            if gallery_imname not in name_to_det_feat:
                continue
            det, feat_g = name_to_det_feat[gallery_imname]
            if det.shape[0] == 0:
                continue
            assert feat_g.size == np.prod(feat_g.shape[:2])
            feat_g = feat_g.reshape(feat_g.shape[:2])
            sim = feat_g.dot(feat_q).ravel()
            if gallery_imname in name2sim:
                continue
            name2sim[gallery_imname] = sim
            name2gt[gallery_imname] = gt
            sims.extend(list(sim))
            imgs_cbgm.extend([gallery_imname] * len(sim))
        for gallery_imname, sim in name2sim.items():
            gt = name2gt[gallery_imname]
            det, feat_g = name_to_det_feat[gallery_imname]
            label = np.zeros(len(sim), dtype=np.int32)
            if gt.size > 0:
                w, h = gt[2], gt[3]
                gt[2:] += gt[:2]
                query_gt.append({"img": str(gallery_imname), "roi": list(map(float, list(gt)))})
                iou_thresh = min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))
                inds = np.argsort(sim)[::-1]
                sim = sim[inds]
                det = det[inds]
                for j, roi in enumerate(det[:, :4]):
                    if iou_scalar(roi, gt) >= iou_thresh:
                        label[j] = 1
                        count_tp += 1
                        break
            y_true.extend(list(label))
            y_score.extend(list(sim))
            imgs.extend([gallery_imname] * len(sim))
            rois.extend(list(det))
            tested.add(gallery_imname)
        y_score = np.asarray(y_score)
        y_true = np.asarray(y_true)
        assert count_tp <= count_gt
        recall_rate = count_tp * 1.0 / count_gt
        ap = 0 if count_tp == 0 else average_precision_score(y_true, y_score) * recall_rate
        aps.append(ap)
        inds = np.argsort(y_score)[::-1]
        y_score = y_score[inds]
        y_true = y_true[inds]
        accs.append([min(1, sum(y_true[:k])) for k in TOPK])
        new_entry = {
            "query_img": str(query_imname),
            "query_roi": list(map(float, list(query_roi))),
            "query_gt": query_gt,
            "gallery": [],
        }
        if int(y_true[0]):  # the reference records wrong results only
            continue
        for k in range(10):
            new_entry["gallery"].append(
                {
                    "img": str(imgs[inds[k]]),
                    "roi": list(map(float, list(rois[inds[k]]))),
                    "score": float(y_score[k]),
                    "correct": int(y_true[k]),
                }
            )
        results.append(new_entry)
    return (
        np.array(aps),
        np.array(accs, dtype=bool),
        (setup, (time.perf_counter() - t0 - setup[0], time.process_time() - c0 - setup[1])),
    )


def loop_prw(data, n):
    """``eval_search_prw(ignore_cam_id=True, cbgm=False)``, step by step."""
    names = [f"c{c}s1_{i:06d}.jpg" for i, c in enumerate(data["cams"])]
    gallery_dets, gallery_feats = seqnet_inputs(data)
    annos = [
        {
            "img_name": names[g],
            "boxes": np.array([b for b, _ in p], np.int32).reshape(-1, 4),
            "pids": np.array([i if i >= 0 else 5555 for _, i in p], np.int32),
            "cam_id": int(data["cams"][g]),
        }
        for g, p in enumerate(data["scene_gts"])
    ]
    query_annos = [
        {
            "img_name": names[q["image"]],
            "boxes": np.array([q["box"]], np.int32),
            "pids": q["identity"],
            "cam_id": q["camera"],
        }
        for q in data["queries"]
    ]

    aps, accs, results = [], [], []
    c0 = time.process_time()
    t0 = time.perf_counter()
    name_to_det_feat = name_to_det_feat_map(names, gallery_dets, gallery_feats)
    setup = (time.perf_counter() - t0, time.process_time() - c0)
    for i in range(n):
        y_true, y_score, imgs, rois = [], [], [], []
        count_gt, count_tp = 0, 0
        feat_p = data["q_emb"][i].ravel()
        query_imname = query_annos[i]["img_name"]
        query_roi = query_annos[i]["boxes"]
        query_pid = query_annos[i]["pids"]
        gallery_imgs = []
        for x in annos:
            if query_pid in x["pids"] and x["img_name"] != query_imname:
                gallery_imgs.append(x)
        query_gts = {}
        for item in gallery_imgs:
            query_gts[item["img_name"]] = item["boxes"][item["pids"] == query_pid]
        gallery_imgs = []
        for x in annos:
            if x["img_name"] != query_imname:
                gallery_imgs.append(x)
        name2sim, sims, imgs_cbgm = {}, [], []
        for item in gallery_imgs:
            gallery_imname = item["img_name"]
            count_gt += gallery_imname in query_gts
            if gallery_imname not in name_to_det_feat:
                continue
            det, feat_g = name_to_det_feat[gallery_imname]
            assert feat_g.size == np.prod(feat_g.shape[:2])
            feat_g = feat_g.reshape(feat_g.shape[:2])
            sim = feat_g.dot(feat_p).ravel()
            if gallery_imname in name2sim:
                continue
            name2sim[gallery_imname] = sim
            sims.extend(list(sim))
            imgs_cbgm.extend([gallery_imname] * len(sim))
        for gallery_imname, sim in name2sim.items():
            det, feat_g = name_to_det_feat[gallery_imname]
            label = np.zeros(len(sim), dtype=np.int32)
            if gallery_imname in query_gts:
                gt = query_gts[gallery_imname].ravel()
                w, h = gt[2] - gt[0], gt[3] - gt[1]
                iou_thresh = min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))
                inds = np.argsort(sim)[::-1]
                sim = sim[inds]
                det = det[inds]
                for j, roi in enumerate(det[:, :4]):
                    if iou_scalar(roi, gt) >= iou_thresh:
                        label[j] = 1
                        count_tp += 1
                        break
            y_true.extend(list(label))
            y_score.extend(list(sim))
            imgs.extend([gallery_imname] * len(sim))
            rois.extend(list(det))
        y_score = np.asarray(y_score)
        y_true = np.asarray(y_true)
        assert count_tp <= count_gt
        recall_rate = count_tp * 1.0 / count_gt
        ap = 0 if count_tp == 0 else average_precision_score(y_true, y_score) * recall_rate
        aps.append(ap)
        inds = np.argsort(y_score)[::-1]
        y_score = y_score[inds]
        y_true = y_true[inds]
        accs.append([min(1, sum(y_true[:k])) for k in TOPK])
        new_entry = {
            "query_img": str(query_imname),
            "query_roi": list(map(float, list(query_roi.squeeze()))),
            "query_gt": query_gts,
            "gallery": [],
        }
        for k in range(10):
            new_entry["gallery"].append(
                {
                    "img": str(imgs[inds[k]]),
                    "roi": list(map(float, list(rois[inds[k]]))),
                    "score": float(y_score[k]),
                    "correct": int(y_true[k]),
                }
            )
        results.append(new_entry)
    return (
        np.array(aps),
        np.array(accs, dtype=bool),
        (setup, (time.perf_counter() - t0 - setup[0], time.process_time() - c0 - setup[1])),
    )


# ------------------------------------------------------------------------------ main
def median_of(repeats, fn, data):
    """Run the vectorised scoring ``repeats`` times; keep the run with the median total time."""
    runs = sorted((fn(data) for _ in range(max(1, repeats))), key=lambda r: r[1] + r[2])
    return runs[len(runs) // 2]


def report(name, res, t_build, t_score, loop_aps, loop_accs, t_loop, n_loop):
    """Print both times (wall, and process CPU time in brackets), the ratio and the agreement."""
    nq = res.num_queries
    t_vec = t_build + t_score
    scale = nq / n_loop
    (setup_wall, setup_cpu), (per_wall, per_cpu) = t_loop
    wall_loop, cpu_loop = setup_wall + per_wall * scale, setup_cpu + per_cpu * scale
    scope = (
        "all queries"
        if n_loop == nq
        else f"{n_loop} of {nq} queries, query loop extrapolated x{scale:.2f}"
    )
    d_ap = np.abs(res.ap[:n_loop] - loop_aps).max()
    d_hits = int((res.hits[:n_loop] != loop_accs).sum())
    print(
        f"[{name}] {nq} queries, {res.extras['strategy']} strategy; "
        f"mAP {100 * res.mAP:.2f}, top-1 {100 * res.accuracy()[1]:.2f}"
    )
    print(
        f"[{name}] vectorised (median of {ARGS.repeats} runs): {t_vec:.2f} s wall "
        f"[{res.extras['cpu_s']:.2f} s CPU] "
        f"(protocol arrays {t_build:.2f} s + scoring {t_score:.2f} s)"
    )
    print(
        f"[{name}] loop (SeqNet structure): {wall_loop:.1f} s wall [{cpu_loop:.1f} s CPU] ({scope})"
    )
    print(
        f"[{name}] speed-up: {wall_loop / t_vec:.1f}x wall, "
        f"{cpu_loop / res.extras['cpu_s']:.1f}x CPU"
    )
    print(
        f"[{name}] agreement on the loop's queries: max |dAP| = {d_ap:.2e}, "
        f"top-k mismatches = {d_hits}"
    )


def main() -> int:
    print(
        f"machine: {cpu_line()}; BLAS threads: {ARGS.threads or 'default'}; "
        f"numpy {np.__version__}; "
        f"loop AP: {AP_IMPL}"
    )
    rng = np.random.default_rng(ARGS.seed)
    if "cuhk" in ARGS.datasets:
        t = time.perf_counter()
        data = make_cuhk(rng)
        g = data["gallery"]
        print(
            f"[CUHK-SYSU] data: {g.num_images} images, {len(g.scores)} detections "
            f"({len(g.scores) / g.num_images:.2f}/image), "
            f"{len(data['queries'])} queries, G100 (generated in {time.perf_counter() - t:.1f} s)"
        )
        res, tb, ts = median_of(ARGS.repeats, vectorised_cuhk, data)
        n = ARGS.loop_queries_cuhk or len(data["queries"])
        aps, accs, tl = loop_cuhk(data, n)
        report("CUHK-SYSU", res, tb, ts, aps, accs, tl, n)
        del data, res
    if "prw" in ARGS.datasets:
        t = time.perf_counter()
        data = make_prw(rng)
        g = data["gallery"]
        print(
            f"[PRW] data: {g.num_images} frames, {len(g.scores)} detections "
            f"({len(g.scores) / g.num_images:.2f}/image), {len(data['queries'])} queries, "
            f"gallery 'all' (generated in {time.perf_counter() - t:.1f} s)"
        )
        res, tb, ts = median_of(ARGS.repeats, vectorised_prw, data)
        n = min(ARGS.loop_queries_prw or len(data["queries"]), len(data["queries"]))
        aps, accs, tl = loop_prw(data, n)
        report("PRW", res, tb, ts, aps, accs, tl, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
