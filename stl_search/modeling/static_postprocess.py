"""Inference post-processing with static shapes: a gallery forward that one graph can capture.

The sync-free path (:mod:`~stl_search.modeling.sync_free_postprocess`) keeps dropped candidates
in place with a ``-inf`` score, but its NMS (torchvision's) and its compaction still return
data-dependent sizes. Here every size is fixed by the config and the image batch:

- RPN: ``PRE_NMS_TOPK_TEST`` candidates per level (a static sort), NMS as a keep *mask*
  (:func:`greedy_nms_mask`), then the ``POST_NMS_TOPK_TEST`` best scores, suppressed ones at
  ``-inf``;
- box step: every (proposal, class) candidate, the same NMS mask, then the
  ``DETECTIONS_PER_IMAGE`` best, ``-inf`` after the real ones;
- identification: every one of those rows is embedded; a ``valid`` mask says which are
  detections. Only the caller, outside the captured region, compacts (one host read per batch).

:func:`greedy_nms_mask` is torchvision's greedy NMS, the same keep set (and, with the ``-inf``
rule above, the same order), computed in a fixed number of parallel rounds rather than one
sequential step per candidate (Cluster-NMS, Zheng et al., TPAMI 2021): candidates sorted by
score, an IoU matrix, then ``keep = no kept higher-scored box overlaps me`` applied to the whole
set at once, ``rounds`` times, starting from "all kept". The greedy keep set is the only fixed
point of that rule (each candidate's answer depends only on the higher-scored ones), and round
``t`` makes at least the ``t`` best candidates final, so the rounds reach it; in practice a few
rounds do (the longest chain of "a suppresses b, b would have suppressed c"). A round that
changes nothing proves it: the function also returns, per set, whether its last round changed
nothing (``settled``). Only the ``k`` best kept boxes are used (``POST_NMS_TOPK_TEST``,
``DETECTIONS_PER_IMAGE``), and the rule restricted to the candidates up to the ``k``-th kept one
is the same rule on a shorter list (nobody there depends on a lower-scored box): when the last
round changed nothing up to there, that prefix is final, the lower candidates do not matter,
and the set counts as settled. Where a set has not settled, the caller recomputes that batch on the
dynamic path (:meth:`~stl_search.modeling.meta_arch.PersonSearchRCNN._inference_group`), so the
result is exact whatever ``TEST.FAST_PATH.STATIC_NMS_ROUNDS`` is; the rounds only decide how
often that happens. The graph has ``rounds`` small steps whatever the candidate count, so the
paper configs' ``PRE_NMS_TOPK_TEST: 6000`` compile like the tiny ones; memory is one boolean
``M x M`` matrix per set (36 MB per image at 6000 candidates).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torchvision.ops import box_iou

from .sync_free_postprocess import box_candidates, rpn_candidates

__all__ = [
    "greedy_nms_mask",
    "static_box_detections",
    "static_proposals",
    "static_rpn_proposals",
]


def greedy_nms_mask(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: Optional[torch.Tensor],
    thresh: float,
    rounds: int,
    needed: int = -1,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """torchvision's ``batched_nms`` as a boolean keep mask, with static shapes, in ``rounds``
    parallel rounds (see the module docstring).

    Args:
        boxes (Tensor): ``(B, M, 4)`` XYXY boxes, ``B`` independent sets.
        scores (Tensor): ``(B, M)``.
        groups (Tensor or None): ``(M,)`` or ``(B, M)`` group ids (NMS within a group only, as
            ``batched_nms``'s ``idxs``); None: one group.
        thresh (float): IoU above which the lower-scored box is suppressed.
        rounds (int): how many rounds to run (at least 1).
        needed (int): how many of the best kept boxes the caller uses; negative: all.

    Returns:
        ``(keep (B, M) bool, settled (B,) bool)``: True for the kept boxes, in the input order;
        ``settled`` True where ``keep`` is exactly ``batched_nms``'s keep set as far as the
        ``needed`` best kept boxes, and the candidates scored above the last of them (the last
        round changed nothing there), False where more rounds were needed.
    """
    if rounds < 1:
        raise ValueError(f"TEST.FAST_PATH.STATIC_NMS_ROUNDS must be at least 1, got {rounds}")
    order = scores.argsort(dim=1, descending=True, stable=True)
    b = boxes.float().gather(1, order[..., None].expand(-1, -1, 4))
    overlap = torch.stack([box_iou(x, x) for x in b.unbind(0)]) > thresh
    if groups is not None:
        g = groups.expand_as(scores).gather(1, order)
        overlap = overlap & (g[:, :, None] == g[:, None, :])
    overlap = overlap.triu(diagonal=1)  # [i, j]: i, when kept, suppresses the later box j
    keep = torch.ones_like(scores, dtype=torch.bool)
    changed = keep
    for _ in range(rounds):
        new = ~(overlap & keep[:, :, None]).any(dim=1)
        changed, keep = new != keep, new
    if needed >= 0:  # only the candidates up to the needed-th kept one count
        kept_before = keep.cumsum(dim=1) - keep.long()
        changed = changed & (kept_before < needed)
    settled = ~changed.any(dim=1)
    return torch.zeros_like(keep).scatter(1, order, keep), settled


def _top(
    boxes: torch.Tensor, scores: torch.Tensor, keep: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best kept rows per set (fewer rows: all), in descending score order, equal
    scores in input order (a stable sort, as torchvision's NMS orders them on the CPU); rows not
    kept come last with a zero box and a ``-inf`` score. Returns boxes, scores, row indices."""
    scores = torch.where(keep, scores, scores.new_full((), -math.inf))
    k = scores.shape[1] if k < 0 else min(k, scores.shape[1])
    top, idx = scores.sort(dim=1, descending=True, stable=True)
    top, idx = top[:, :k], idx[:, :k]
    boxes = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
    boxes = torch.where(torch.isfinite(top)[..., None], boxes, boxes.new_zeros(()))
    return boxes, top, idx


def static_rpn_proposals(
    proposals: List[torch.Tensor],
    pred_objectness_logits: List[torch.Tensor],
    image_size: Tuple[int, int],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    nms_rounds: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~stl_search.modeling.sync_free_postprocess.find_top_rpn_proposals` with static
    shapes, for a batch of images of one size; ``nms_rounds`` as :func:`greedy_nms_mask`'s.

    Returns:
        ``(boxes (N, P, 4), logits (N, P), settled (N,))``, ``P = min(post_nms_topk,
        candidates)``: the same proposals in the same order, then dropped ones (zero box,
        ``-inf`` logit), where ``settled`` (:func:`greedy_nms_mask`) is True.
    """
    boxes, scores, level_ids = rpn_candidates(
        proposals,
        pred_objectness_logits,
        [image_size] * proposals[0].shape[0],
        pre_nms_topk,
        min_box_size,
    )
    groups = None if len(proposals) == 1 else level_ids
    keep, settled = greedy_nms_mask(boxes, scores, groups, nms_thresh, nms_rounds, post_nms_topk)
    boxes, scores, _ = _top(boxes, scores, keep & torch.isfinite(scores), post_nms_topk)
    return boxes, scores, settled


def static_box_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    objectness_logits: torch.Tensor,
    image_size: Tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
    nms_rounds: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~stl_search.modeling.sync_free_postprocess.fast_rcnn_candidates` with static
    shapes; ``nms_rounds`` as :func:`greedy_nms_mask`'s.

    Args:
        boxes (Tensor): ``(N, R, K*4)`` or ``(N, R, 4)`` predicted boxes.
        scores (Tensor): ``(N, R, K+1)`` class probabilities.
        objectness_logits (Tensor): ``(N, R)``, ``-inf`` for a dropped proposal.

    Returns:
        ``(boxes (N, D, 4), scores (N, D), classes (N, D), settled (N,))``: the detections in
        Detectron2's order, then dropped rows (zero box, ``-inf`` score), where ``settled``
        (:func:`greedy_nms_mask`) is True; ``D = topk_per_image`` (all candidates when it is
        negative or larger).
    """
    num_classes = scores.shape[-1] - 1
    cands = [
        box_candidates(b, s, o, image_size, score_thresh)
        for b, s, o in zip(boxes.unbind(0), scores.unbind(0), objectness_logits.unbind(0))
    ]
    boxes, scores, classes = (torch.stack(t) for t in zip(*cands))
    groups = None if num_classes == 1 else classes
    keep, settled = greedy_nms_mask(boxes, scores, groups, nms_thresh, nms_rounds, topk_per_image)
    boxes, scores, idx = _top(boxes, scores, keep & torch.isfinite(scores), topk_per_image)
    return boxes, scores, classes.gather(1, idx), settled


def static_proposals(
    rpn, features: Dict[str, torch.Tensor], image_size: Tuple[int, int], nms_rounds: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detectron2's ``RPN`` at inference (``RPN`` or
    :class:`~stl_search.modeling.sync_free_postprocess.SyncFreeRPN`: the same parameters) with
    :func:`static_rpn_proposals`, for a batch of images of one size ``image_size``.

    Returns:
        ``(boxes (N, P, 4), objectness_logits (N, P), settled (N,))`` as
        :func:`static_rpn_proposals`.
    """
    feats = [features[f] for f in rpn.in_features]
    anchors = rpn.anchor_generator(feats)
    logits, deltas = rpn.rpn_head(feats)
    # The reshapes of RPN.forward.
    logits = [s.permute(0, 2, 3, 1).flatten(1) for s in logits]
    box_dim = rpn.anchor_generator.box_dim
    deltas = [
        x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
        .permute(0, 3, 4, 1, 2)
        .flatten(1, -2)
        for x in deltas
    ]
    return static_rpn_proposals(
        rpn._decode_proposals(anchors, deltas),
        logits,
        image_size,
        rpn.nms_thresh,
        rpn.pre_nms_topk[False],
        rpn.post_nms_topk[False],
        rpn.min_box_size,
        nms_rounds,
    )
