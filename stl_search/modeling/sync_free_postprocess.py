"""Inference post-processing without per-step host reads: the sync-free path.

On a GPU at batch 1 the host is the bottleneck, and every host read of a device value
(``.item()``, ``nonzero``, boolean-mask indexing, a tensor's truth value) stalls it until the GPU
catches up. Detectron2's inference post-processing reads the device after almost every step: the
non-finite checks (``if not valid_mask.all()`` and ``Boxes.clip``'s assert), the empty-box and
score-threshold masks (``nonzero``), the RoI pooler's ``repeat_interleave`` and the final
``nonempty()`` mask of ``detector_postprocess``.

Here every candidate that Detectron2 would drop (non-finite box or score, empty box, score at or
below the threshold) keeps its place with a score of ``-inf`` and a zero box instead: NMS and the
static ``[:k]`` slices then act on it as if it were gone (NMS keeps scores in descending order, so
it can only come after every real candidate; a zero box overlaps nothing, so it suppresses
nothing, and it does not move the per-class offsets of batched NMS). The candidates are compacted
with :func:`compact`, one read of the per-image counts per batch. What is left per image is each
NMS (torchvision's CUDA kernel reads its mask back once; accepted). An image whose RPN keeps
fewer than ``POST_NMS_TOPK_TEST`` real proposals passes its ``-inf`` ones on to the box head too:
they are computed and then dropped.

Selected by name in the config, as Detectron2's TridentNet selects ``TridentRPN``:
``MODEL.PROPOSAL_GENERATOR.NAME: SyncFreeRPN`` (:class:`SyncFreeRPN`, Detectron2's ``RPN`` with
the proposals of :func:`find_top_rpn_proposals`) and ``MODEL.ROI_HEADS.SYNC_FREE_INFERENCE: True``
(:class:`~stl_search.modeling.roi_heads.PersonSearchROIHeads` takes its detections from
:func:`fast_rcnn_candidates` and compacts them before the identification branch). The meta
architecture's ``_postprocess`` compacts the detections that are empty in the output frame, again
with one read per batch. The result is the reference path's, in the same order, up to float
rounding and the order of exactly tied scores (``tests/modeling/test_sync_free_postprocess.py``).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from detectron2.layers import cat, nms
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator import RPN
from detectron2.structures import Boxes, Instances

__all__ = [
    "SyncFreeRPN",
    "box_candidates",
    "clip_boxes",
    "compact",
    "fast_rcnn_candidates",
    "find_top_rpn_proposals",
    "pool_boxes",
    "rpn_candidates",
]


def clip_boxes(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``Boxes.clip`` of an ``(R, 4)`` tensor without its finiteness assert (a host read); the same
    clamps, so the same numbers. Boxes here are finite."""
    h, w = size
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack(
        (
            x1.clamp(min=0, max=w),
            y1.clamp(min=0, max=h),
            x2.clamp(min=0, max=w),
            y2.clamp(min=0, max=h),
        ),
        dim=-1,
    )


def _drop(boxes: torch.Tensor, scores: torch.Tensor, keep: torch.Tensor):
    """Candidates outside ``keep``: zero box, ``-inf`` score."""
    boxes = torch.where(keep[:, None], boxes, boxes.new_zeros(()))
    return boxes, torch.where(keep, scores, scores.new_full((), -math.inf))


def _nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, thresh: float, one_group: bool
) -> torch.Tensor:
    """Detectron2's ``batched_nms`` (torchvision's coordinate trick) without ``batched_nms``'s
    host reads: one ``nms`` call. ``one_group``: every ``groups`` value is equal, so the offsets
    are zero and plain ``nms`` gives the same result."""
    boxes = boxes.float()
    if not one_group and boxes.numel() > 0:
        offsets = groups.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
        boxes = boxes + offsets[:, None]
    return nms(boxes, scores, thresh)


def rpn_candidates(
    proposals: List[torch.Tensor],
    pred_objectness_logits: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    pre_nms_topk: int,
    min_box_size: float,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The RPN's candidates before NMS (the sync-free and the static path share them): the
    ``pre_nms_topk`` best per level, clipped, non-finite and small ones dropped.

    Returns:
        ``(boxes (N, M, 4), logits (N, M), level_ids (M,))``, dropped candidates with a zero box
        and a ``-inf`` logit.
    """
    device = proposals[0].device
    batch_idx = torch.arange(len(image_sizes), device=device)
    topk_scores, topk_proposals, level_ids = [], [], []
    for level_id, (proposals_i, logits_i) in enumerate(zip(proposals, pred_objectness_logits)):
        k = min(logits_i.shape[1], pre_nms_topk)
        logits_i, idx = logits_i.sort(descending=True, dim=1)  # as Detectron2 (sort, not topk)
        topk_scores.append(logits_i.narrow(1, 0, k))
        topk_proposals.append(proposals_i[batch_idx[:, None], idx.narrow(1, 0, k)])
        level_ids.append(torch.full((k,), level_id, dtype=torch.int64, device=device))
    topk_scores, topk_proposals = cat(topk_scores, dim=1), cat(topk_proposals, dim=1)
    boxes, scores = [], []
    for n, image_size in enumerate(image_sizes):
        b, s = topk_proposals[n], topk_scores[n]
        finite = torch.isfinite(b).all(dim=1) & torch.isfinite(s)
        b = clip_boxes(torch.where(finite[:, None], b, b.new_zeros(())), image_size)
        b, s = _drop(b, s, finite & Boxes(b).nonempty(min_box_size))
        boxes.append(b)
        scores.append(s)
    return torch.stack(boxes), torch.stack(scores), cat(level_ids, dim=0)


def find_top_rpn_proposals(
    proposals: List[torch.Tensor],
    pred_objectness_logits: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
) -> List[Instances]:
    """Detectron2's ``find_top_rpn_proposals`` at inference, without host reads but the NMS.

    Args:
        proposals (list[Tensor]): per level, ``(N, Hi*Wi*A, 4)`` decoded proposals.
        pred_objectness_logits (list[Tensor]): per level, ``(N, Hi*Wi*A)``.
        image_sizes (list[tuple]): ``(h, w)`` of each image.
        nms_thresh (float): IoU threshold of the per-level NMS.
        pre_nms_topk (int): proposals kept per level before NMS.
        post_nms_topk (int): proposals kept per image after NMS.
        min_box_size (float): proposals with a side at or below this (after clipping) are dropped.

    Returns:
        list[Instances]: per image, ``proposal_boxes`` and ``objectness_logits``: Detectron2's
        proposals in the same order, followed (only when fewer than ``post_nms_topk`` survive)
        by dropped ones with a zero box and a ``-inf`` logit.
    """
    boxes, scores, level_ids = rpn_candidates(
        proposals, pred_objectness_logits, image_sizes, pre_nms_topk, min_box_size
    )
    results = []
    for n, image_size in enumerate(image_sizes):
        keep = _nms(boxes[n], scores[n], level_ids, nms_thresh, one_group=len(proposals) == 1)
        keep = keep[:post_nms_topk]
        res = Instances(image_size)
        res.proposal_boxes = Boxes(boxes[n][keep])
        res.objectness_logits = scores[n][keep]
        results.append(res)
    return results


@PROPOSAL_GENERATOR_REGISTRY.register()
class SyncFreeRPN(RPN):
    """Detectron2's ``RPN`` (same parameters and training) whose inference proposals come from
    :func:`find_top_rpn_proposals` (``MODEL.PROPOSAL_GENERATOR.NAME: SyncFreeRPN``). Its dropped
    proposals have a ``-inf`` objectness: the ROI heads must treat them as dropped, which
    :func:`fast_rcnn_candidates` does (``MODEL.ROI_HEADS.SYNC_FREE_INFERENCE``) and Detectron2's
    ``fast_rcnn_inference`` does not."""

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        if self.training:
            return super().predict_proposals(
                anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes
            )
        with torch.no_grad():
            return find_top_rpn_proposals(
                self._decode_proposals(anchors, pred_anchor_deltas),
                pred_objectness_logits,
                image_sizes,
                self.nms_thresh,
                self.pre_nms_topk[False],
                self.post_nms_topk[False],
                self.min_box_size,
            )


def pool_boxes(pooler, features: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
    """``pooler(features, box_lists)`` for a single-level ``ROIPooler`` without its
    ``repeat_interleave`` (a host read on CUDA): the batch index column is built from the
    lengths the host knows. Multi-level poolers go through ``pooler`` itself.

    Args:
        pooler: Detectron2's ``ROIPooler``.
        features (list[Tensor]): one ``(N, C, H, W)`` map per pooler level.
        box_lists (list[Boxes]): per image, boxes in the input frame.
    """
    level_poolers = getattr(pooler, "level_poolers", None)
    if level_poolers is None or len(level_poolers) != 1 or not box_lists:
        return pooler(features, box_lists)
    boxes = torch.cat([b.tensor for b in box_lists])
    index = torch.cat(
        [
            torch.full((len(b), 1), i, dtype=boxes.dtype, device=boxes.device)
            for i, b in enumerate(box_lists)
        ]
    )
    feature = features[0]
    if feature.dtype != boxes.dtype:  # autocast: pool float32, as meta_arch's pooler hook does
        feature = feature.float()
    return level_poolers[0](feature, torch.cat([index, boxes], dim=1))


def box_candidates(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    objectness_logits: Optional[torch.Tensor],
    image_size: Tuple[int, int],
    score_thresh,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's box-step candidates before NMS (the sync-free and the static path share
    them): one per (proposal, class), clipped; non-finite ones, those of a dropped proposal
    (``-inf`` objectness) and those at or below ``score_thresh`` get a zero box and ``-inf``.

    Returns:
        ``(boxes (R*K, 4), scores (R*K,), classes (R*K,))``.
    """
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if objectness_logits is not None:
        valid = valid & torch.isfinite(objectness_logits)
    scores = scores[:, :-1]
    num_classes = scores.shape[1]
    boxes = torch.where(valid[:, None], boxes, boxes.new_zeros(()))
    # No len() of a tensor below: a traced graph keeps the proposal count variable.
    boxes_per_row = boxes.shape[1] // 4
    boxes = clip_boxes(boxes.reshape(-1, 4), image_size).view(-1, boxes_per_row, 4)
    boxes = boxes.expand(-1, num_classes, 4).reshape(-1, 4)  # class-agnostic: a no-op view
    keep = (valid[:, None] & (scores > score_thresh)).reshape(-1)
    classes = torch.arange(num_classes, device=keep.device).expand_as(scores).reshape(-1)
    boxes, scores = _drop(boxes, scores.reshape(-1), keep)
    return boxes, scores, classes


def fast_rcnn_candidates(
    boxes: List[torch.Tensor],
    scores: List[torch.Tensor],
    proposals: List[Instances],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> List[Instances]:
    """Detectron2's ``fast_rcnn_inference`` without host reads but the NMS: the per-image
    candidate step of the sync-free ROI heads and of the exported gallery graph.

    Args:
        boxes (list[Tensor]): per image, ``(Ri, K*4)`` or ``(Ri, 4)`` predicted boxes.
        scores (list[Tensor]): per image, ``(Ri, K+1)`` class probabilities.
        proposals (list[Instances]): the proposals the predictions are for: their
            ``image_size``, and their ``objectness_logits`` (a ``-inf`` one is a dropped proposal
            of :func:`find_top_rpn_proposals`, whose predictions are dropped too).
        score_thresh (float or Tensor), nms_thresh, topk_per_image: as Detectron2's (a tensor
            threshold: the exported graph's input).

    Returns:
        list[Instances]: per image, ``pred_boxes``, ``scores`` and ``pred_classes``: Detectron2's
        detections in the same order, followed by dropped candidates with a ``-inf`` score (at
        most ``topk_per_image`` in all when it is >= 0).
    """
    results = []
    for boxes_i, scores_i, props in zip(boxes, scores, proposals):
        logits = props.objectness_logits if props.has("objectness_logits") else None
        num_classes = scores_i.shape[1] - 1
        boxes_i, scores_i, classes = box_candidates(
            boxes_i, scores_i, logits, props.image_size, score_thresh
        )
        kept = _nms(boxes_i, scores_i, classes, nms_thresh, one_group=num_classes == 1)
        if topk_per_image >= 0:
            kept = kept[:topk_per_image]
        res = Instances(props.image_size)
        res.pred_boxes = Boxes(boxes_i[kept])
        res.scores = scores_i[kept]
        res.pred_classes = classes[kept]
        results.append(res)
    return results


def compact(instances: List[Instances], keep: List[torch.Tensor]) -> List[Instances]:
    """``[x[k] for x, k in zip(instances, keep)]`` (boolean masks) with one host read for the
    whole batch, the per-image counts, instead of one ``nonzero`` per image: the kept rows, in
    their order (a stable sort puts them first)."""
    orders = [torch.sort((~k).to(torch.uint8), stable=True).indices for k in keep]
    counts = [int(c) for c in torch.stack([k.sum() for k in keep]).cpu()] if keep else []
    return [x[order[:n]] for x, order, n in zip(instances, orders, counts)]
