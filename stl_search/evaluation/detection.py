"""Detection metrics of the person-search protocol (SeqNet's ``eval_detection``), pure NumPy.

Also the two primitives the search protocol shares with it: scikit-learn's average precision
(without scikit-learn) and the element-wise box IoU. Boxes are ``XYXY`` absolute pixels; per-image
data is CSR (see :mod:`.csr`). The protocol and the reference's quirks kept here are described in
``../../docs/protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .csr import check_splits

__all__ = ["average_precision", "matched_box_iou", "DetectionResult", "detection_metrics"]


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score(y_true, y_score)``, without scikit-learn.

    Non-interpolated AP over distinct score thresholds (tied scores form one threshold):
    ``sum_n (R_n - R_{n-1}) * P_n`` for thresholds in decreasing order.

    Args:
        y_true: ``(n,)`` bool (or 0/1) labels.
        y_score: ``(n,)`` scores, higher = more confident.

    Returns:
        AP in [0, 1]; 0.0 when there is no positive (scikit-learn also returns 0 there, with a
        warning) or no sample at all (where scikit-learn raises).
    """
    y_true = np.asarray(y_true).astype(bool).ravel()
    y_score = np.asarray(y_score).ravel()
    n_pos = int(y_true.sum())
    if n_pos == 0 or y_true.size == 0:
        return 0.0
    order = np.argsort(y_score, kind="mergesort")[::-1]
    s, t = y_score[order], y_true[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(t)[last_of_threshold].astype(np.float64)
    precision = tps / (last_of_threshold + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def matched_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired boxes ``a[i]``, ``b[i]`` (``(n, 4)`` XYXY each), float64
    ``(n,)``; not the ``(n, m)`` matrix of every pair (Detectron2's ``matched_pairwise_iou``).

    The reference's formula (no +1 on widths). A non-positive union (degenerate boxes, where the
    reference divides by zero) gives 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    inter = iw * ih
    union = (
        (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        - inter
    )
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


@dataclass(frozen=True)
class DetectionResult:
    """Detection AP (fraction, AP x recall as the reference) and recall, with their counts."""

    ap: float
    recall: float
    num_gt: int
    num_tp: int
    num_det: int


def detection_metrics(
    gt_boxes: np.ndarray,
    gt_splits: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_splits: np.ndarray,
    *,
    gt_labeled: Optional[np.ndarray] = None,
    labeled_only: bool = False,
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
) -> DetectionResult:
    """Detection AP and recall exactly as SeqNet's ``eval_detection``.

    Args:
        gt_boxes: ``(G, 4)`` ground-truth person boxes of all gallery images, CSR by ``gt_splits``
            (``(I + 1,)``).
        det_boxes, det_scores: ``(N, 4)``, ``(N,)`` detections, CSR by ``det_splits`` (``(I + 1,)``,
            same images in the same order).
        gt_labeled: ``(G,)`` bool, True for persons with an identity; needed for ``labeled_only``.
        labeled_only: the paper's "labeled persons" rows (Table 5).
        score_thresh: detections below are dropped.
        iou_thresh: IoU for a match.

    Semantics (the reference's, including its quirks):
        * per image, IoUs are rounded to float32; a detection matches a person when the IoU is
          ``>= iou_thresh``, the person is the detection's highest-IoU person *and* the
          detection is that person's highest-IoU detection (first index on ties); the rest are
          false positives;
        * AP = ``average_precision`` over all kept detections of the counted images x recall;
        * ``labeled_only``: unlabeled persons are removed, and images without a labeled person are
          skipped entirely (their detections are *not* counted as false positives).

    Where the reference fails we return defined numbers: an image with detections but no person
    (the reference's ``argmax`` of an empty array) counts its detections as false positives;
    ``recall = 0`` and ``ap = 0`` when there is no person at all (the reference divides by zero).
    """
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores).ravel()
    gt_splits = check_splits(gt_splits, len(gt_boxes), "gt")
    det_splits = check_splits(det_splits, len(det_boxes), "det")
    if gt_splits.size != det_splits.size:
        raise ValueError("gt_splits and det_splits must describe the same images")
    num_images = gt_splits.size - 1
    gt_img = np.repeat(np.arange(num_images), np.diff(gt_splits))
    det_img = np.repeat(np.arange(num_images), np.diff(det_splits))

    gt_keep = np.ones(len(gt_boxes), dtype=bool)
    det_keep = det_scores >= score_thresh
    if labeled_only:
        if gt_labeled is None:
            raise ValueError("labeled_only needs gt_labeled")
        gt_keep = np.asarray(gt_labeled, dtype=bool).ravel().copy()
        image_counted = np.bincount(gt_img[gt_keep], minlength=num_images) > 0
        det_keep &= image_counted[det_img]

    gt_idx, det_idx = np.flatnonzero(gt_keep), np.flatnonzero(det_keep)
    ng = np.bincount(gt_img[gt_idx], minlength=num_images)
    nd = np.bincount(det_img[det_idx], minlength=num_images)
    num_gt, num_det = int(ng.sum()), int(det_idx.size)
    if num_det == 0 or num_gt == 0:
        return DetectionResult(0.0, 0.0, num_gt, 0, num_det)

    # Every (person, detection) pair of the same image, as flat arrays (local -> kept indices).
    gt_start = np.cumsum(ng) - ng
    det_start = np.cumsum(nd) - nd
    npairs = ng * nd
    pair_img = np.repeat(np.arange(num_images), npairs)
    local = np.arange(int(npairs.sum())) - np.repeat(np.cumsum(npairs) - npairs, npairs)
    nd_pair = nd[pair_img]
    g = gt_start[pair_img] + local // np.maximum(nd_pair, 1)
    d = det_start[pair_img] + local % np.maximum(nd_pair, 1)
    iou = matched_box_iou(gt_boxes[gt_idx][g], det_boxes[det_idx][d]).astype(np.float32)

    # Per detection, its best person (np.argmax: first on ties); per person, its best detection.
    order = np.lexsort((g, -iou, d))
    first = order[np.r_[True, d[order][1:] != d[order][:-1]]]
    det_best_gt = np.empty(num_det, dtype=np.int64)
    det_best_gt[d[first]] = g[first]
    order = np.lexsort((d, -iou, g))
    first = order[np.r_[True, g[order][1:] != g[order][:-1]]]
    gt_best_det = np.full(num_gt, -1, dtype=np.int64)
    gt_best_det[g[first]] = d[first]

    tp_pair = (iou >= np.float32(iou_thresh)) & (det_best_gt[d] == g) & (gt_best_det[g] == d)
    y_true = np.zeros(num_det, dtype=bool)
    y_true[d[tp_pair]] = True
    num_tp = int(tp_pair.sum())
    recall = num_tp / num_gt
    ap = average_precision(y_true, det_scores[det_idx]) * recall
    return DetectionResult(float(ap), float(recall), num_gt, num_tp, num_det)
