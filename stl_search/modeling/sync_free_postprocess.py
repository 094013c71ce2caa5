"""Inference post-processing without per-step host reads (``TEST.FAST_PATH.SYNC_FREE_POSTPROCESS``).

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
nothing, and it does not move the per-class offsets of batched NMS). The detections are compacted
once per batch, after the box head, with one read of the per-image counts. What is left per image
is each NMS (torchvision's CUDA kernel reads its mask back once; accepted). An image whose RPN
keeps fewer than ``POST_NMS_TOPK_TEST`` real proposals passes its ``-inf`` ones on to the box head
too: they are computed and then dropped.

The result is the reference path's, in the same order, up to float rounding and the order of
exactly tied scores (``tests/modeling/test_sync_free_postprocess.py``).

Plugged in by :class:`~stl_search.modeling.meta_arch.PersonSearchRCNN` (``sync_free_postprocess``):
:class:`SyncFreeRPN` replaces Detectron2's ``RPN`` (same parameters) and :func:`sync_free_inference`
replaces ``GeneralizedRCNN.inference`` for gallery images.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.layers import cat, nms
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator import RPN
from detectron2.structures import Boxes, Instances

__all__ = [
    "SyncFreeRPN",
    "fast_rcnn_candidates",
    "find_top_rpn_proposals",
    "pool_boxes",
    "sync_free_inference",
]


def _clip(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``Boxes.clip`` without its finiteness assert (a host read); boxes here are finite."""
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
    level_ids = cat(level_ids, dim=0)

    results = []
    for n, image_size in enumerate(image_sizes):
        boxes, scores = topk_proposals[n], topk_scores[n]
        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        boxes = _clip(torch.where(finite[:, None], boxes, boxes.new_zeros(())), image_size)
        boxes, scores = _drop(boxes, scores, finite & Boxes(boxes).nonempty(min_box_size))
        keep = _nms(boxes, scores, level_ids, nms_thresh, one_group=len(proposals) == 1)
        keep = keep[:post_nms_topk]
        res = Instances(image_size)
        res.proposal_boxes = Boxes(boxes[keep])
        res.objectness_logits = scores[keep]
        results.append(res)
    return results


@PROPOSAL_GENERATOR_REGISTRY.register()
class SyncFreeRPN(RPN):
    """Detectron2's ``RPN`` (same parameters and training) whose inference proposals come from
    :func:`find_top_rpn_proposals`; selected by ``PersonSearchRCNN`` when
    ``TEST.FAST_PATH.SYNC_FREE_POSTPROCESS`` is on and ``MODEL.PROPOSAL_GENERATOR.NAME`` is
    ``"RPN"``."""

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


def fast_rcnn_candidates(
    boxes: List[torch.Tensor],
    scores: List[torch.Tensor],
    proposals: List[Instances],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> List[Instances]:
    """Detectron2's ``fast_rcnn_inference`` without host reads but the NMS.

    Args:
        boxes (list[Tensor]): per image, ``(Ri, K*4)`` or ``(Ri, 4)`` predicted boxes.
        scores (list[Tensor]): per image, ``(Ri, K+1)`` class probabilities.
        proposals (list[Instances]): the proposals the predictions are for: their
            ``image_size``, and their ``objectness_logits`` (a ``-inf`` one is a dropped proposal
            of :func:`find_top_rpn_proposals`, whose predictions are dropped too).
        score_thresh, nms_thresh, topk_per_image: as Detectron2's.

    Returns:
        list[Instances]: per image, ``pred_boxes``, ``scores`` and ``pred_classes``: Detectron2's
        detections in the same order, followed by dropped candidates with a ``-inf`` score (at
        most ``topk_per_image`` in all when it is >= 0).
    """
    results = []
    for boxes_i, scores_i, props in zip(boxes, scores, proposals):
        valid = torch.isfinite(boxes_i).all(dim=1) & torch.isfinite(scores_i).all(dim=1)
        if props.has("objectness_logits"):
            valid &= torch.isfinite(props.objectness_logits)
        scores_i = scores_i[:, :-1]
        num_classes = scores_i.shape[1]
        boxes_i = torch.where(valid[:, None], boxes_i, boxes_i.new_zeros(()))
        boxes_i = _clip(boxes_i.reshape(-1, 4), props.image_size).view(len(valid), -1, 4)
        boxes_i = boxes_i.expand(-1, num_classes, 4).reshape(-1, 4)  # class-agnostic: a no-op view
        keep = (valid[:, None] & (scores_i > score_thresh)).reshape(-1)
        boxes_i, scores_i = _drop(boxes_i, scores_i.reshape(-1), keep)
        classes = torch.arange(num_classes, device=keep.device).repeat(len(valid))
        kept = _nms(boxes_i, scores_i, classes, nms_thresh, one_group=num_classes == 1)
        if topk_per_image >= 0:
            kept = kept[:topk_per_image]
        res = Instances(props.image_size)
        res.pred_boxes = Boxes(boxes_i[kept])
        res.scores = scores_i[kept]
        res.pred_classes = classes[kept]
        results.append(res)
    return results


def _detection_candidates(roi_heads, features: Dict[str, torch.Tensor], proposals: List[Instances]):
    """``StandardROIHeads._forward_box`` at inference, through :func:`pool_boxes` and
    :func:`fast_rcnn_candidates`."""
    x = pool_boxes(
        roi_heads.box_pooler,
        [features[f] for f in roi_heads.box_in_features],
        [p.proposal_boxes for p in proposals],
    )
    predictions = roi_heads.box_predictor(roi_heads.box_head(x))
    predictor = roi_heads.box_predictor
    return fast_rcnn_candidates(
        predictor.predict_boxes(predictions, proposals),
        predictor.predict_probs(predictions, proposals),
        proposals,
        predictor.test_score_thresh,
        predictor.test_nms_thresh,
        predictor.test_topk_per_image,
    )


def _scaled(boxes: torch.Tensor, size: Tuple[int, int], output_size: Tuple[int, int]):
    """``detector_postprocess``'s boxes: scaled from ``size`` to ``output_size`` and clipped."""
    out_h, out_w = output_size
    scaled = Boxes(boxes.clone())
    scaled.scale(out_w / size[1], out_h / size[0])
    return _clip(scaled.tensor, output_size)


def _compact(candidates: List[Instances], output_sizes: Optional[Sequence[Tuple[int, int]]]):
    """The candidates that Detectron2 would return (finite score and, when ``output_sizes`` is
    given, a non-empty box in the output frame), in order, with their boxes in the output frame.
    One host read for the whole batch: the per-image counts."""
    orders, counts, scaled = [], [], []
    for i, inst in enumerate(candidates):
        keep = torch.isfinite(inst.scores)
        boxes = inst.pred_boxes.tensor
        if output_sizes is not None:
            boxes = _scaled(boxes, inst.image_size, output_sizes[i])
            keep &= Boxes(boxes).nonempty()
        scaled.append(boxes)
        # Kept candidates first, in their order (a stable sort of 0 = kept, 1 = dropped).
        orders.append(torch.sort((~keep).to(torch.uint8), stable=True).indices)
        counts.append(keep.sum())
    counts = [int(c) for c in torch.stack(counts).cpu()] if counts else []
    index = [order[:n] for order, n in zip(orders, counts)]
    return [inst[idx] for inst, idx in zip(candidates, index)], [
        b[i] for b, i in zip(scaled, index)
    ]


def sync_free_inference(model, batched_inputs: List[Dict], do_postprocess: bool = True):
    """``GeneralizedRCNN.inference`` (no ``detected_instances``) of a person-search model, with the
    post-processing of this module: same results, same order.

    Args:
        model: a ``PersonSearchRCNN`` in eval mode (its ``proposal_generator`` a
            :class:`SyncFreeRPN`, or any proposal generator, or None with ``"proposals"`` given).
        batched_inputs (list[dict]): gallery inputs (``image``, optional ``height``/``width``).
        do_postprocess (bool): as Detectron2's: results in the original image frame.

    Returns:
        ``[{"instances": Instances}]`` when ``do_postprocess``, else ``list[Instances]`` in the
        input frame; fields ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_embeddings``.
    """
    images = model.preprocess_image(batched_inputs)
    features = model.backbone(images.tensor)
    if model.proposal_generator is not None:
        proposals, _ = model.proposal_generator(images, features, None)
    else:
        proposals = [x["proposals"].to(model.device) for x in batched_inputs]
    candidates = _detection_candidates(model.roi_heads, features, proposals)
    output_sizes = None
    if do_postprocess:
        output_sizes = [
            (x.get("height", s[0]), x.get("width", s[1]))
            for x, s in zip(batched_inputs, images.image_sizes)
        ]
    detections, boxes = _compact(candidates, output_sizes)
    detections = model.roi_heads.forward_with_given_boxes(features, detections)
    if not do_postprocess:
        return detections
    results = []
    for det, out_boxes, size in zip(detections, boxes, output_sizes):
        inst = Instances(size, **det.get_fields())
        inst.pred_boxes = Boxes(out_boxes)
        results.append({"instances": inst})
    return results
