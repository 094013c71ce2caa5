"""The vectorised search metrics against hand-computed cases and the plain loop reference."""

from __future__ import annotations

import numpy as np
import pytest

from stl_search import evaluation as M
from stl_search.evaluation import search_kernels as SK

from . import seqnet_reference as ref
from .metric_cases import compare, emb_with_sim, protocol_for, random_case, to_gallery


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
