"""Opt-in: the metric core against SeqNet's own ``eval_func.py`` (not part of this repository).

Set ``SEQNET_ROOT`` to a checkout of serend1p1ty/SeqNet (with scikit-learn installed) to run it;
otherwise it is skipped. It builds a random PRW-like set and a TestG-like ``.mat`` file, runs the
reference's ``eval_search_prw`` (both gallery modes), ``eval_search_cuhk`` and ``eval_detection``,
with and without CBGM, and requires the same numbers (to 1e-9).
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest
from scipy.io import savemat

from stl_search import evaluation as M

SEQNET = os.environ.get("SEQNET_ROOT", "")
pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(SEQNET, "eval_func.py")),
    reason="set SEQNET_ROOT to a SeqNet checkout to compare with its eval_func.py",
)


def _synthetic(rng, num_images=80, dim=24, num_ids=20):
    cams = rng.integers(1, 5, num_images)
    protos = rng.normal(size=(num_ids, dim))
    annos, dets, feats = [], [], []
    for i in range(num_images):
        n = int(rng.integers(1, 6))
        ids = list(rng.choice(num_ids, size=min(n, 3), replace=False)) + [5555] * max(0, n - 3)
        boxes = []
        for _ in ids:
            w = int(rng.integers(4, 14)) if rng.random() < 0.25 else int(rng.integers(20, 60))
            x, y = int(rng.integers(0, 500)), int(rng.integers(0, 300))
            boxes.append([x, y, x + w, y + int(w * rng.uniform(1.5, 3))])
        boxes = np.array(boxes, np.int32)
        annos.append(
            {
                "img_name": f"c{cams[i]}_{i:04d}.jpg",
                "boxes": boxes,
                "pids": np.array(ids, np.int32),
                "cam_id": int(cams[i]),
            }
        )
        d, f = [], []
        for b, p in zip(boxes, ids):
            if rng.random() < 0.85:
                d.append(
                    list(b + rng.normal(0, 0.08 * (b[2] - b[0]), 4))
                    + [float(rng.uniform(0.3, 1.0))]
                )
                f.append((protos[p] if p != 5555 else rng.normal(size=dim)) + rng.normal(size=dim))
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, 500), rng.uniform(0, 300)
            d.append([x, y, x + 30, y + 70, float(rng.uniform(0.3, 1.0))])
            f.append(rng.normal(size=dim))
        f = np.array(f, np.float32).reshape(-1, dim)
        dets.append(np.array(d, np.float32).reshape(-1, 5))
        feats.append(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))
    queries = []
    for i, a in enumerate(annos):
        for b, p in zip(a["boxes"], a["pids"]):
            if p != 5555 and sum(p in x["pids"] for x in annos) >= 2 and rng.random() < 0.5:
                v = protos[p] + rng.normal(size=dim)
                queries.append(
                    {
                        "img": i,
                        "box": b,
                        "pid": int(p),
                        "cam": int(cams[i]),
                        "feat": (v / np.linalg.norm(v)).astype(np.float32),
                    }
                )
    return cams, annos, dets, feats, queries


class _Dataset(list):
    pass


def test_same_numbers_as_seqnet_eval_func(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(SEQNET)
    monkeypatch.chdir(tmp_path)  # the reference writes vis/results.json
    os.makedirs("vis")
    import eval_func as R  # noqa: PLC0415 (from the SEQNET_ROOT checkout put on the path above)

    rng = np.random.default_rng(7)
    cams, annos, dets, feats, queries = _synthetic(rng)
    names = [a["img_name"] for a in annos]
    gds = _Dataset(annos)
    gds.annotations, gds.img_prefix, gds.root = annos, "", str(tmp_path / "cuhk")
    qanno = [
        {"img_name": names[q["img"]], "boxes": q["box"][None], "pids": q["pid"], "cam_id": q["cam"]}
        for q in queries
    ]
    qds = _Dataset(qanno)
    qds.annotations = qanno
    q_emb = np.stack([q["feat"] for q in queries])

    # The query frame for CBGM: the query box first, then the frame's other confident detections.
    query_dets, query_feats = [], []
    for q in queries:
        d, f = dets[q["img"]], feats[q["img"]]
        keep = [
            k
            for k in np.argsort(-d[:, 4], kind="stable")
            if d[k, 4] >= 0.5 and M.matched_box_iou(d[k : k + 1, :4], q["box"][None])[0] <= 0.5
        ]
        query_dets.append(np.vstack([np.r_[q["box"], 1.0][None], d[keep]]).astype(np.float32))
        query_feats.append(np.vstack([q["feat"][None], f[keep]]).astype(np.float32))

    gal = M.GalleryDetections(
        np.concatenate([d[:, :4] for d in dets]),
        np.concatenate([d[:, 4] for d in dets]),
        np.concatenate(feats),
        np.r_[0, np.cumsum([len(d) for d in dets])],
    )
    gt_boxes = np.concatenate([a["boxes"] for a in annos]).astype(float)
    gt_ids = np.concatenate([np.where(a["pids"] == 5555, -1, a["pids"]) for a in annos])
    gt_splits = np.r_[0, np.cumsum([len(a["boxes"]) for a in annos])]
    q_img, q_id, q_cam = (np.array([q[k] for q in queries]) for k in ("img", "pid", "cam"))

    def context(k1, k2):
        return M.CBGMContext(
            k1=k1,
            k2=k2,
            context_splits=np.r_[0, np.cumsum([len(f) - 1 for f in query_feats])],
            context_embeddings=np.concatenate([f[1:] for f in query_feats]),
        )

    def same(ref, mine):
        assert mine.mAP == pytest.approx(ref["mAP"], abs=1e-9)
        np.testing.assert_allclose(list(mine.accuracy().values()), ref["accs"], atol=1e-9)

    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        for mode, ignore_cam in (("all", True), ("multi_view", False)):
            gq = M.prw_galleries(q_img, q_id, q_cam, cams, gt_ids, gt_boxes, gt_splits, mode=mode)
            for cbgm in (False, True):
                ref = R.eval_search_prw(
                    gds,
                    qds,
                    dets,
                    feats,
                    list(q_emb),
                    query_dets,
                    query_feats,
                    cbgm=cbgm,
                    ignore_cam_id=ignore_cam,
                )
                same(ref, M.search_metrics(gal, q_emb, gq, cbgm=context(30, 4) if cbgm else None))

        # CUHK-SYSU: a TestG30.mat with positives first, a duplicate listing and own-image listings.
        size, listings = 30, []
        for qi, q in enumerate(queries):
            pos = [i for i in range(len(annos)) if i != q["img"] and q["pid"] in annos[i]["pids"]]
            lst = (
                pos
                + [int(i) for i in rng.permutation(len(annos)) if i not in pos and i != q["img"]][
                    : size - len(pos)
                ]
            )
            if qi % 7 == 0:
                lst[-1] = lst[0]
            if qi % 11 == 0:
                lst[-2] = q["img"]
            listings.append(lst)
        fields = [("imname", "O"), ("idlocate", "O"), ("ishard", "O")]
        struct = np.empty((1, len(queries)), dtype=[("Query", "O"), ("Gallery", "O")])
        t_list, t_box = [], []
        for qi, q in enumerate(queries):
            b = q["box"]
            qs = np.empty((1, 1), dtype=fields)
            qs[0, 0] = (
                names[q["img"]],
                np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]]], float),
                0.0,
            )
            gs = np.empty((1, size), dtype=fields)
            for j, g in enumerate(listings[qi]):
                hit = annos[g]["pids"] == q["pid"]
                loc = np.zeros((1, 0))
                if hit.any():
                    bb = annos[g]["boxes"][hit][0]
                    loc = np.array([[bb[0], bb[1], bb[2] - bb[0], bb[3] - bb[1]]], float)
                    t_list.append(qi * size + j)
                    t_box.append(bb)
                gs[0, j] = (names[g], loc, 0.0)
            struct[0, qi] = (qs, gs)
        os.makedirs(tmp_path / "cuhk/annotation/test/train_test")
        savemat(str(tmp_path / "cuhk/annotation/test/train_test/TestG30.mat"), {"TestG30": struct})
        gq = M.explicit_galleries(
            np.arange(len(queries) + 1) * size,
            np.concatenate(listings),
            np.array(t_list),
            np.array(t_box, float),
        )
        for cbgm in (False, True):
            ref = R.eval_search_cuhk(
                gds,
                qds,
                dets,
                feats,
                list(q_emb),
                query_dets,
                query_feats,
                cbgm=cbgm,
                gallery_size=size,
            )
            for strategy in ("pairs", "matmul"):
                same(
                    ref,
                    M.search_metrics(
                        gal, q_emb, gq, cbgm=context(10, 3) if cbgm else None, strategy=strategy
                    ),
                )

        # Detection (per-image lists: the reference's `det != []` needs them on NumPy >= 1.25).
        for labeled in (False, True):
            for thresh in (0.5, 0.01):
                recall, ap = R.eval_detection(
                    gds, [d.tolist() for d in dets], det_thresh=thresh, labeled_only=labeled
                )
                mine = M.detection_metrics(
                    gt_boxes,
                    gt_splits,
                    gal.boxes,
                    gal.scores,
                    gal.splits,
                    gt_labeled=gt_ids >= 0,
                    labeled_only=labeled,
                    score_thresh=thresh,
                )
                assert (mine.recall, mine.ap) == pytest.approx((recall, ap), abs=1e-9)
