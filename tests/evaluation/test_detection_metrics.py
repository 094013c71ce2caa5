"""Detection AP and recall of the metric core against the loop reference and a hand case."""

from __future__ import annotations

import numpy as np
import pytest

from stl_search import evaluation as M

from . import seqnet_reference as ref
from .metric_cases import random_case, to_gallery, to_gt


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
