"""The authors' search rule beside SeqNet's, on hand-made galleries where the two differ."""

from __future__ import annotations

import numpy as np
import pytest

from stl_search.evaluation.galleries import GalleryDetections, explicit_galleries
from stl_search.evaluation.search_authors import authors_search_metrics, detection_identities
from stl_search.evaluation.search_metrics import search_metrics

TARGET = [0.0, 0.0, 100.0, 200.0]  # large: SeqNet's IoU threshold is 0.5 for it
OTHER = [30.0, 0.0, 130.0, 200.0]  # another person, overlapping the target


def _emb(sim: float) -> np.ndarray:
    """A unit vector whose dot product with the query (e0) is ``sim``."""
    return np.array([sim, np.sqrt(1.0 - sim**2), 0.0], dtype=np.float32)


def _case(det_boxes_per_image, sims_per_image, gt_per_image):
    """One query (identity 1, embedding e0) whose target (identity 1) is in every image listed."""
    boxes = [b for image in det_boxes_per_image for b in image]
    sims = [s for image in sims_per_image for s in image]
    counts = [len(image) for image in det_boxes_per_image]
    gallery = GalleryDetections(
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.full(len(boxes), 0.9, dtype=np.float32),
        embeddings=np.stack([_emb(s) for s in sims]) if sims else np.zeros((0, 3), np.float32),
        splits=np.r_[0, np.cumsum(counts)].astype(np.int64),
    )
    gt_boxes = [b for image in gt_per_image for b, _ in image]
    gt_ids = [i for image in gt_per_image for _, i in image]
    gt_splits = np.r_[0, np.cumsum([len(image) for image in gt_per_image])].astype(np.int64)
    with_target = [i for i, image in enumerate(gt_per_image) if any(p == 1 for _, p in image)]
    galleries = explicit_galleries(
        np.array([0, len(gt_per_image)]),
        np.arange(len(gt_per_image)),
        np.array(with_target),
        np.array([[b for b, p in gt_per_image[i] if p == 1][0] for i in with_target]),
        name="g",
    )
    ids = detection_identities(gallery, np.array(gt_boxes), np.array(gt_ids), gt_splits)
    query = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    seqnet = search_metrics(gallery, query, galleries, topk=(1, 2))
    authors = authors_search_metrics(gallery, ids, query, np.array([1]), galleries, topk=(1, 2))
    return ids, seqnet, authors


def test_several_positives_in_one_image():
    # Two detections on the target (IoU 1 and 0.8): SeqNet counts the more similar one only.
    ids, seqnet, authors = _case(
        [[TARGET, [0.0, 0.0, 100.0, 160.0]], [[300.0, 0.0, 400.0, 200.0]]],
        [[0.9, 0.8], [0.95]],
        [[(TARGET, 1)], [([300.0, 0.0, 400.0, 200.0], 2)]],
    )
    assert ids.tolist() == [1, 1, 2]
    # Ranked: 0.95 (false), 0.9 (true), 0.8 (true).
    assert seqnet.num_tp.tolist() == [1] and authors.num_tp.tolist() == [2]
    assert seqnet.ap[0] == pytest.approx(1 / 2)  # AP 1/2, recall 1
    assert authors.ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2 * 2)  # recall 2/1, not capped
    assert authors.ranked_correct[0, :3].tolist() == [False, True, True]
    assert seqnet.ranked_correct[0, :3].tolist() == [False, True, False]


def test_detection_closer_to_another_person_is_negative_for_the_authors():
    # det overlaps the target at IoU 0.67 and the other person at 0.82: SeqNet takes it as the
    # target (IoU >= 0.5 with the target's box), the authors give it the other identity.
    det = [20.0, 0.0, 120.0, 200.0]
    ids, seqnet, authors = _case([[det]], [[0.9]], [[(TARGET, 1), (OTHER, 3)]])
    assert ids.tolist() == [3]
    assert seqnet.ap[0] == pytest.approx(1.0) and seqnet.hits[0].tolist() == [True, True]
    assert authors.ap[0] == 0.0 and authors.hits[0].tolist() == [False, False]


def test_iou_exactly_one_half_counts_for_seqnet_only():
    # IoU = 10000 / 20000 = 0.5: SeqNet's ">= 0.5" keeps it, the paper's "> 0.5" does not.
    ids, seqnet, authors = _case([[[0.0, 0.0, 100.0, 100.0]]], [[0.7]], [[(TARGET, 1)]])
    assert ids.tolist() == [-1]
    assert seqnet.num_tp.tolist() == [1] and authors.num_tp.tolist() == [0]


def test_small_target_relaxed_threshold_is_seqnets_only():
    # A 10 x 20 target: SeqNet's threshold is min(0.5, 200 / (20 * 30)) = 1/3; IoU here is 0.4.
    small = [0.0, 0.0, 10.0, 20.0]
    ids, seqnet, authors = _case([[[0.0, 0.0, 10.0, 8.0]]], [[0.7]], [[(small, 1)]])
    assert ids.tolist() == [-1]
    assert seqnet.num_tp.tolist() == [1] and authors.num_tp.tolist() == [0]


def test_agree_when_each_target_has_one_clean_detection():
    ids, seqnet, authors = _case(
        [[TARGET, [300.0, 0.0, 400.0, 200.0]], [[0.0, 0.0, 100.0, 200.0]]],
        [[0.6, 0.9], [0.8]],
        [[(TARGET, 1), ([300.0, 0.0, 400.0, 200.0], -1)], [(TARGET, 1)]],
    )
    assert ids.tolist() == [1, -1, 1]
    assert authors.ap[0] == pytest.approx(seqnet.ap[0])
    assert authors.hits.tolist() == seqnet.hits.tolist() == [[False, True]]
    assert authors.ranked_dets.tolist() == seqnet.ranked_dets.tolist()


def test_score_threshold_is_strict_for_the_authors():
    gallery = GalleryDetections(
        boxes=np.array([TARGET], dtype=np.float32),
        scores=np.array([0.5], dtype=np.float32),
        embeddings=_emb(0.9)[None],
        splits=np.array([0, 1]),
    )
    galleries = explicit_galleries(np.array([0, 1]), np.array([0]), np.array([0]), [TARGET])
    ids = detection_identities(gallery, np.array([TARGET]), np.array([1]), np.array([0, 1]))
    query = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    assert search_metrics(gallery, query, galleries).num_tp.tolist() == [1]
    assert authors_search_metrics(gallery, ids, query, [1], galleries).num_tp.tolist() == [0]
