"""The vectorised metric core against hand-computed cases and the plain loop reference."""

from __future__ import annotations

import numpy as np
import pytest

from stl_search import evaluation as M
from stl_search.evaluation import search_kernels as SK

from . import seqnet_reference as ref


# ----------------------------------------------------------------------------- helpers
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


# ----------------------------------------------------------------------------- AP
def test_average_precision_hand_values():
    assert M.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx((1 + 2 / 3) / 2)
    assert M.average_precision([0, 1, 1], [0.9, 0.8, 0.7]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # Ties form one threshold: precision 1/2 at recall 1.
    assert M.average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert M.average_precision([0, 1, 0, 1], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(
        0.5 * (1 / 3) + 0.5 * (2 / 4)
    )
    assert M.average_precision([0, 0], [0.3, 0.2]) == 0.0
    assert M.average_precision([], []) == 0.0


def test_average_precision_matches_definition_random():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        y = rng.random(n) < 0.4
        s = rng.integers(0, 5, n).astype(float)
        assert M.average_precision(y, s) == pytest.approx(
            ref.ap_definition(list(y), list(s)), abs=1e-12
        )


def test_average_precision_matches_sklearn_if_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    for _ in range(200):
        n = int(rng.integers(2, 30))
        y = rng.random(n) < 0.4
        y[0] = True
        s = rng.integers(0, 6, n).astype(np.float32)
        assert M.average_precision(y, s) == pytest.approx(
            metrics.average_precision_score(y, s), abs=1e-12
        )


# ----------------------------------------------------------------------------- hand-computed search
def _hand_case():
    dim = 8
    t0, t1, t2 = [0, 0, 40, 80], [100, 0, 140, 80], [50, 50, 90, 130]
    images = [
        {
            "camera": 1,
            "gts": [(t0, 7)],
            "dets": [
                (t0, 0.9, emb_with_sim(0.9, 1, dim)),
                ([0, 100, 40, 180], 0.8, emb_with_sim(0.5, 2, dim)),
            ],
        },
        {
            "camera": 2,
            "gts": [(t1, 7)],
            "dets": [
                ([101, 1, 141, 81], 0.9, emb_with_sim(0.6, 3, dim)),
                ([200, 0, 240, 80], 0.9, emb_with_sim(0.8, 4, dim)),
            ],
        },
        {
            "camera": 2,
            "gts": [(t2, 8)],
            "dets": [([300, 300, 340, 380], 0.95, emb_with_sim(0.7, 5, dim))],
        },
    ]
    e0 = np.eye(dim)[0]
    q_a = {
        "emb": e0,
        "identity": 7,
        "image": -1,
        "camera": 3,
        "listing": [(0, t0), (1, t1), (2, None)],
    }
    q_b = {"emb": e0, "identity": 8, "image": -1, "camera": 3, "listing": [(0, None), (2, t2)]}
    return images, [q_a, q_b], dim


def test_hand_computed_search_ap():
    images, queries, dim = _hand_case()
    res = compare(images, queries, "explicit", dim)
    # Query a: ranked .9(T) .8 .7 .6(T) .5 -> AP = 1/2 * 1/1 + 1/2 * 2/4 = 0.75, recall 1.
    # Query b: its target's image holds only a far-away detection: nothing found -> 0.
    np.testing.assert_allclose(res.ap, [0.75, 0.0])
    assert res.mAP == pytest.approx(0.375)
    assert res.hits.tolist() == [[True, True, True], [False, False, False]]
    assert res.accuracy() == {1: 0.5, 5: 0.5, 10: 0.5}


def test_hand_computed_recall_and_duplicates():
    images, queries, dim = _hand_case()
    # Image 1 listed twice: two listings with the target -> denominator 3; found 2 -> x 2/3.
    q = dict(
        queries[0],
        listing=[(0, [0, 0, 40, 80]), (1, [100, 0, 140, 80]), (1, [100, 0, 140, 80]), (2, None)],
    )
    res = compare(images, [q], "explicit", dim)
    assert res.num_gt.tolist() == [3] and res.num_tp.tolist() == [2]
    assert res.ap[0] == pytest.approx(0.75 * 2 / 3)
    # First listing of image 1 without the target: a later listing with it counts but is not scored.
    q = dict(queries[0], listing=[(0, [0, 0, 40, 80]), (1, None), (1, [100, 0, 140, 80])])
    res = compare(images, [q], "explicit", dim)
    assert res.num_gt.tolist() == [2] and res.num_tp.tolist() == [1]
    # ranked .9(T) .8 .6 .5 -> AP 1, x recall 1/2
    assert res.ap[0] == pytest.approx(0.5)


def test_hand_computed_small_target_iou_rule():
    dim = 4
    tiny = [10, 10, 16, 22]  # 6 x 12: threshold 72 / (16 * 22) = 0.2045
    det = [11, 12, 19, 24]  # IoU with tiny = 5*10 / (72 + 96 - 50) = 0.424 < 0.5
    images = [{"camera": 1, "gts": [(tiny, 3)], "dets": [(det, 0.9, emb_with_sim(0.3, 1, dim))]}]
    q = {"emb": np.eye(dim)[0], "identity": 3, "image": -1, "camera": 2, "listing": [(0, tiny)]}
    res = compare(images, [q], "explicit", dim)
    assert res.ap[0] == pytest.approx(1.0)
    assert M.reid_iou_threshold(np.array([tiny]))[0] == pytest.approx(72 / (16 * 22))
    big = [0, 0, 60, 120]
    assert M.reid_iou_threshold(np.array([big]))[0] == 0.5


def test_ties_inside_one_image_pick_one_true_positive():
    dim = 3
    t = [0, 0, 40, 80]
    e = np.array([1.0, 0.0, 0.0])
    images = [
        {
            "camera": 1,
            "gts": [(t, 1)],
            "dets": [
                ([1, 1, 41, 81], 0.9, e),
                ([0, 0, 40, 79], 0.9, e),
                ([300, 0, 340, 80], 0.9, e),
            ],
        }
    ]
    q = {"emb": e, "identity": 1, "image": -1, "camera": 2, "listing": [(0, t)]}
    res = compare(images, [q], "explicit", dim)
    # One threshold with 1 TP among 3 detections: AP = 1/3; the first detection is the TP.
    assert res.ap[0] == pytest.approx(1 / 3)
    assert res.ranked_correct[0, :3].tolist() == [True, False, False]


# ----------------------------------------------------------------------------- random agreement
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("mode", ["explicit", "all", "multi_view"])
def test_random_cases_agree_with_loop_reference(mode, integer):
    rng = np.random.default_rng(100 + 7 * integer + len(mode))
    for trial in range(25):
        images, queries = random_case(rng, integer=integer)
        for strategy in ("pairs", "matmul"):
            compare(images, queries, mode, 5, strategy=strategy, topk=(1, 2, 5))


def test_prw_galleries_exclusions():
    images = [
        {"camera": 1, "gts": [([0, 0, 10, 20], 5)], "dets": []},
        {"camera": 1, "gts": [([0, 0, 10, 20], 5), ([5, 5, 20, 30], 5)], "dets": []},
        {"camera": 2, "gts": [([0, 0, 10, 20], 6), ([1, 1, 11, 21], 5)], "dets": []},
        {"camera": 3, "gts": [], "dets": []},
    ]
    queries = [{"identity": 5, "image": 0, "camera": 1}, {"identity": 5, "image": -1, "camera": 2}]
    all_ = protocol_for("all", images, queries)
    mv = protocol_for("multi_view", images, queries)
    assert all_.images[all_.image_splits[0] : all_.image_splits[1]].tolist() == [1, 2, 3]
    assert all_.images[all_.image_splits[1] : all_.image_splits[2]].tolist() == [0, 1, 2, 3]
    assert mv.images[mv.image_splits[0] : mv.image_splits[1]].tolist() == [2, 3]
    assert mv.images[mv.image_splits[1] : mv.image_splits[2]].tolist() == [0, 1, 3]
    assert all_.num_listings_with_target().tolist() == [2, 3]
    assert mv.num_listings_with_target().tolist() == [1, 2]
    # The first box of the identity in an image is the target.
    row = all_.target_splits[0]
    assert all_.target_boxes[row].tolist() == [0, 0, 10, 20]
    assert all_.target_images[all_.target_splits[0] : all_.target_splits[1]].tolist() == [1, 2]
    assert all_.target_boxes[row + 1].tolist() == [1, 1, 11, 21]


# ----------------------------------------------------------------------------- CBGM
def test_cbgm_agrees_with_brute_force_reference():
    rng = np.random.default_rng(5)
    dim = 6
    for trial in range(15):
        images, queries = random_case(rng, n_images=7, dim=dim)
        for q in queries:
            q["context"] = [rand_emb(rng, dim, False) for _ in range(int(rng.integers(0, 4)))]
        counts = [len(q["context"]) for q in queries]
        ctx = np.array([c for q in queries for c in q["context"]]).reshape(-1, dim)
        for mode in ("explicit", "all"):
            cb = M.CBGMContext(
                k1=int(rng.integers(1, 6)),
                k2=3,
                context_splits=np.r_[0, np.cumsum(counts)],
                context_embeddings=ctx,
            )
            compare(
                images, queries, mode, dim, cbgm=cb, strategy="pairs" if trial % 2 else "matmul"
            )


def test_cbgm_changes_scores_and_is_noop_without_context():
    dim = 4
    e = np.eye(dim)
    t = [0, 0, 40, 80]
    # Image 0: the target (weakly similar) stands beside someone who matches the query's companion.
    images = [
        {
            "camera": 1,
            "gts": [(t, 1)],
            "dets": [(t, 0.9, 0.6 * e[0] + 0.8 * e[1]), ([50, 0, 90, 80], 0.9, e[2])],
        },
        {
            "camera": 1,
            "gts": [],
            "dets": [([0, 0, 40, 80], 0.9, 0.7 * e[0] + np.sqrt(0.51) * e[3])],
        },
    ]
    q = {
        "emb": e[0],
        "identity": 1,
        "image": -1,
        "camera": 2,
        "listing": [(0, t), (1, None)],
        "context": [e[2]],
    }
    gal = to_gallery(images, dim)
    gq = protocol_for("explicit", images, [q])
    plain = M.search_metrics(gal, e[:1], gq)
    assert plain.ap[0] == pytest.approx(0.5)
    cb = M.CBGMContext(k1=3, k2=2, context_splits=np.array([0, 1]), context_embeddings=e[2:3])
    reranked = M.search_metrics(gal, e[:1], gq, cbgm=cb)
    assert reranked.ap[0] == pytest.approx(
        1.0
    )  # matched pair weights 0.6 and 1.0 -> target gets 1.0
    none = M.CBGMContext(
        k1=3, k2=2, context_splits=np.array([0, 0]), context_embeddings=np.zeros((0, dim))
    )
    np.testing.assert_array_equal(M.search_metrics(gal, e[:1], gq, cbgm=none).ap, plain.ap)


def test_query_context_from_gallery():
    dim = 3
    e = np.eye(dim)
    images = [
        {
            "camera": 1,
            "gts": [],
            "dets": [
                ([0, 0, 40, 80], 0.95, e[0]),
                ([1, 0, 41, 80], 0.6, e[1]),
                ([100, 0, 140, 80], 0.7, e[1]),
                ([200, 0, 240, 80], 0.9, e[2]),
                ([300, 0, 340, 80], 0.4, e[2]),
            ],
        }
    ]
    gal = to_gallery(images, dim)
    ctx = M.query_context_from_gallery(
        gal, np.array([0, -1]), np.array([[0, 0, 40, 80], [0, 0, 1, 1]]), k2=4
    )
    assert ctx.context_splits.tolist() == [0, 2, 2]  # overlapping and below-threshold ones dropped
    np.testing.assert_array_equal(ctx.context_embeddings, [e[2], e[1]])  # most confident first


# ----------------------------------------------------------------------------- detection
@pytest.mark.parametrize("labeled_only", [False, True])
def test_detection_agrees_with_loop_reference(labeled_only):
    rng = np.random.default_rng(11 + labeled_only)
    for _ in range(40):
        images, _ = random_case(rng, n_images=10)
        for im in images:  # duplicated detections: tied IoUs exercise the first-argmax rule
            if im["dets"] and rng.random() < 0.3:
                im["dets"].append(im["dets"][0])
        gal = to_gallery(images, 5)
        gt_boxes, gt_ids, gt_splits = to_gt(images)
        for thresh in (0.5, 0.01):
            got = M.detection_metrics(
                gt_boxes,
                gt_splits,
                gal.boxes,
                gal.scores,
                gal.splits,
                gt_labeled=gt_ids >= 0,
                labeled_only=labeled_only,
                score_thresh=thresh,
            )
            ap, recall = ref.detection(images, score_thresh=thresh, labeled_only=labeled_only)
            assert got.ap == pytest.approx(ap, abs=1e-9)
            assert got.recall == pytest.approx(recall, abs=1e-9)


def test_detection_hand_case():
    gts = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [50, 0, 60, 10]], dtype=float)
    # Image 0: gts 0, 1 (gt 1 unlabeled); image 1: gt 2.
    dets = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [80, 0, 90, 10]], dtype=float)
    scores = np.array([0.9, 0.95, 0.8, 0.7])
    r = M.detection_metrics(
        gts, [0, 2, 3], dets, scores, [0, 3, 4], gt_labeled=np.array([True, False, True])
    )
    # det0 and det1 both best-match gt0; gt0's best det is det0 (IoU 1) -> TP; det1 FP;
    # det2 TP (gt1); det3 FP. Ranked .95 F, .9 T, .8 T, .7 F: AP = 1/2*1/2 + 1/2*2/3; recall 2/3.
    assert r.recall == pytest.approx(2 / 3)
    assert r.ap == pytest.approx((0.25 + 1 / 3) * 2 / 3)
    lab = M.detection_metrics(
        gts,
        [0, 2, 3],
        dets,
        scores,
        [0, 3, 4],
        gt_labeled=np.array([True, False, True]),
        labeled_only=True,
    )
    # Labeled: gt0 (image 0) and gt2 (image 1); det2 now an FP.
    # Ranked .95F .9T .8F .7F: AP 1/2, recall 1/2.
    assert lab.recall == pytest.approx(0.5)
    assert lab.ap == pytest.approx(0.5 * 0.5)


# ----------------------------------------------------------------------------- edge cases
def test_edge_cases_give_defined_numbers():
    dim = 4
    rng = np.random.default_rng(3)
    images, queries = random_case(rng, dim=dim)
    gal = to_gallery(images, dim)

    # No query.
    empty = protocol_for("explicit", images, [])
    res = M.search_metrics(gal, np.zeros((0, dim)), empty)
    assert res.mAP == 0.0 and res.accuracy() == {1: 0.0, 5: 0.0, 10: 0.0} and res.num_queries == 0

    # Every detection below the threshold.
    res = M.search_metrics(
        gal,
        np.array([q["emb"] for q in queries]),
        protocol_for("all", images, queries),
        score_thresh=2.0,
    )
    assert np.all(res.ap == 0) and not res.hits.any() and np.all(res.ranked_dets == -1)

    # A gallery without any detection.
    bare = [dict(im, dets=[]) for im in images]
    res = M.search_metrics(
        to_gallery(bare, dim),
        np.array([q["emb"] for q in queries]),
        protocol_for("multi_view", bare, queries),
    )
    assert np.all(res.ap == 0) and np.isfinite(res.mAP)

    # A query whose target is nowhere: AP 0, counted in the mean and reported.
    q = dict(queries[0], identity=12345, listing=[(0, None), (1, None)])
    res = M.search_metrics(
        gal,
        np.array([q["emb"], queries[1]["emb"]]),
        protocol_for("explicit", images, [q, queries[1]]),
    )
    assert res.ap[0] == 0.0 and res.num_gt[0] == 0 and res.num_queries_without_target >= 1
    assert np.isfinite(res.mAP)

    # Detection with no person and no detection.
    z = np.zeros((0, 4))
    r = M.detection_metrics(z, [0, 0], z, np.zeros(0), [0, 0])
    assert (r.ap, r.recall) == (0.0, 0.0)
    r = M.detection_metrics(z, [0, 0, 0], np.array([[0, 0, 1, 1.0]]), np.array([0.9]), [0, 1, 1])
    assert (r.ap, r.recall, r.num_det) == (0.0, 0.0, 1)


def test_float16_gallery_and_multiple_protocols_share_one_pass():
    rng = np.random.default_rng(9)
    images, queries = random_case(rng, dim=8)
    gal = to_gallery(images, 8)
    q_emb = np.array([q["emb"] for q in queries])
    protos = [protocol_for(m, images, queries) for m in ("explicit", "all", "multi_view")]
    together = M.search_metrics(gal, q_emb, protos)
    for p, r in zip(protos, together):
        np.testing.assert_allclose(M.search_metrics(gal, q_emb, p).ap, r.ap, atol=1e-12)
    half = M.GalleryDetections(gal.boxes, gal.scores, gal.embeddings.astype(np.float16), gal.splits)
    r16 = M.search_metrics(half, q_emb.astype(np.float32), protos[1])
    np.testing.assert_allclose(r16.ap, together[1].ap, atol=5e-2)


def test_pairs_scoring_in_small_chunks_equals_matmul(monkeypatch):
    rng = np.random.default_rng(21)
    images, queries = random_case(rng, n_images=30, n_queries=40, dim=6, integer=True)
    gal = to_gallery(images, 6)
    q_emb = np.array([q["emb"] for q in queries])
    protos = [protocol_for(m, images, queries) for m in ("explicit", "all")]
    dense = M.search_metrics(gal, q_emb, protos, strategy="matmul")
    original = SK.flat_chunks
    monkeypatch.setattr(
        SK, "flat_chunks", lambda offsets, splits: original(offsets, splits, budget=50)
    )
    assert len(SK.flat_chunks(np.arange(0, 400, 10), np.zeros(40, dtype=np.int64))) > 5
    sparse = M.search_metrics(gal, q_emb, protos, strategy="pairs")
    for a, b in zip(dense, sparse):
        assert b.extras["strategy"] == "pairs"
        np.testing.assert_allclose(a.ap, b.ap, atol=1e-12)
        np.testing.assert_array_equal(a.hits, b.hits)
        np.testing.assert_array_equal(a.num_tp, b.num_tp)
        np.testing.assert_array_equal(a.ranked_dets, b.ranked_dets)
        np.testing.assert_array_equal(a.ranked_correct, b.ranked_correct)
