"""The loop side of ``eval_speed.py``: SeqNet's person-search evaluation, ported as it is written.

``eval_search_cuhk`` / ``eval_search_prw`` of SeqNet's ``eval_func.py`` (cbgm off), after its
structure: per query, per gallery listing, in Python, on the data structures it reads (loadmat
records for CUHK-SYSU, per-frame dicts for PRW), its result records built as it builds them.
It is the baseline the vectorised ``stl_search.evaluation`` is timed against and checked
against (AP, top-k), so it is kept apart from the driver and from the data generation, and kept
faithful rather than fast: its cost is the figure.

AP is scikit-learn's ``average_precision_score``, as in the reference, when importable; else a
replica of scikit-learn's algorithm without its input checks (faster: a smaller ratio).
:data:`AP_IMPL` names the one in use (the driver prints it).

:func:`loop_cuhk` and :func:`loop_prw` take the dicts of ``eval_data.make_cuhk`` /
``make_prw``, the number of queries to run and the top-k cut-offs; they return the per-query AP,
the per-query top-k hits and their times: ((setup wall, setup CPU), (query loop wall, query loop
CPU)), from the in-memory features and protocol records (the score filter included, the
conversion into the reference's inputs not).
"""

from __future__ import annotations

import time

import numpy as np

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


def loop_cuhk(data, n, topk):
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
        accs.append([min(1, sum(y_true[:k])) for k in topk])
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


def loop_prw(data, n, topk):
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
        accs.append([min(1, sum(y_true[:k])) for k in topk])
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
