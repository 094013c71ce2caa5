"""``PersonSearchROIHeads``: Detectron2's box branch plus the identification branch.

Box branch (paper 3.3), all Detectron2 parts: RoI Align 7x7 on ``res3`` (``ROI_BOX_HEAD.*``) ->
``FastRCNNConvFCHead`` (two 1024-d FC) -> ``FastRCNNOutputLayers`` (one class: person).

Identification branch: ``id_pooler`` (MRFP, or single-level RoI Align 32x16 on res3) ->
``id_head`` (res4 + res5 + GAP + BNNeck) -> ``id_loss`` in training, L2-normalised
``pred_embeddings`` at inference.

Which boxes train the identification branch (``MODEL.PERSON_SEARCH.ID_TRAIN_BOXES``):
``"gt"`` (default, the authors' code): the ground-truth boxes of the batch, labeled ones with
their ``gt_person_ids``, unlabeled ones with -1 (no CE loss; OIM queues them). ``"proposals"``:
the sampled *foreground* proposals with the person id of the ground truth they matched;
background proposals are dropped (Detectron2 copies the nearest ground truth's ``gt_*`` fields
onto them too, so their ids would be wrong).

Inference (``MODEL.ROI_HEADS.SYNC_FREE_INFERENCE``): Detectron2's box step (``_forward_box``:
``fast_rcnn_inference``), or the sync-free one (``stl_search/modeling/sync_free_postprocess.py``:
dropped candidates keep their place with a ``-inf`` score and are compacted once per batch, before
the identification branch embeds the detections). The same detections in the same order.
:meth:`PersonSearchROIHeads.static_forward` is the static-shape step
(``TEST.FAST_PATH.STATIC_SHAPES``, ``stl_search/modeling/static_postprocess.py``): fixed-size
detection sets, all rows embedded, a ``valid`` mask instead of a compaction.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from .id_net import IdentificationNet
from .losses import build_id_loss
from .mrfp import build_id_pooler
from .static_postprocess import static_box_detections
from .sync_free_postprocess import compact, fast_rcnn_candidates, pool_boxes

__all__ = ["PersonSearchROIHeads"]

_ID_TRAIN_BOXES = ("gt", "proposals")


@ROI_HEADS_REGISTRY.register()
class PersonSearchROIHeads(StandardROIHeads):
    """Faster R-CNN box head + identification branch; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        id_pooler: nn.Module,
        id_head: nn.Module,
        id_loss: nn.Module,
        id_loss_weight: float = 1.0,
        id_train_boxes: str = "gt",
        sync_free_inference: bool = False,
        **kwargs,
    ):
        """
        NOTE: the box branch's arguments are those of Detectron2's ``StandardROIHeads``.

        Args:
            id_pooler (nn.Module): RoI pooling for the identification branch, called as
                ``id_pooler(features, boxes)`` with the backbone's feature dict and per-image
                :class:`Boxes`: :class:`~stl_search.modeling.mrfp.MultiLevelRoIFusionPooler` or
                :class:`~stl_search.modeling.mrfp.SingleLevelRoIPooler`.
            id_head (nn.Module): RoI features -> un-normalised embeddings ``(R, D)``
                (:class:`~stl_search.modeling.id_net.IdentificationNet`).
            id_loss (nn.Module): ``id_loss(embeddings, person_ids)`` -> scalar, ``-1`` ids being
                unlabeled (:func:`~stl_search.modeling.losses.build_id_loss`).
            id_loss_weight (float): weight of ``loss_id`` in the total loss.
            id_train_boxes (str): which boxes train the identification branch: ``"gt"`` or
                ``"proposals"`` (see the module docstring).
            sync_free_inference (bool): the inference box step without host reads between its
                steps (:func:`~stl_search.modeling.sync_free_postprocess.fast_rcnn_candidates`,
                one read per batch); needed with a
                :class:`~stl_search.modeling.sync_free_postprocess.SyncFreeRPN`, whose dropped
                proposals it skips. Training is the same either way.
            kwargs: the ``StandardROIHeads`` arguments (box pooler, box head, box predictor,
                proposal matcher, ...).
        """
        super().__init__(**kwargs)
        if id_train_boxes not in _ID_TRAIN_BOXES:
            raise ValueError(
                f"MODEL.PERSON_SEARCH.ID_TRAIN_BOXES must be one of {_ID_TRAIN_BOXES}, "
                f"got {id_train_boxes!r}"
            )
        self.id_pooler = id_pooler
        self.id_head = id_head
        self.id_loss = id_loss
        self.id_loss_weight = id_loss_weight
        self.id_train_boxes = id_train_boxes
        self.sync_free_inference = sync_free_inference

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        if cfg.MODEL.ROI_HEADS.NUM_CLASSES != 1:
            raise ValueError("person search detects one class: set MODEL.ROI_HEADS.NUM_CLASSES 1")
        ret.update(cls._init_id_branch(cfg, input_shape))
        return ret

    @classmethod
    def _init_id_branch(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        id_pooler = build_id_pooler(cfg, input_shape)
        id_head = IdentificationNet(cfg, id_pooler.output_shape)
        ps = cfg.MODEL.PERSON_SEARCH
        return {
            "id_pooler": id_pooler,
            "id_head": id_head,
            "id_loss": build_id_loss(cfg, id_head.embedding_dim),
            "id_loss_weight": ps.ID_LOSS_WEIGHT,
            "id_train_boxes": ps.ID_TRAIN_BOXES,
            "sync_free_inference": cfg.MODEL.ROI_HEADS.SYNC_FREE_INFERENCE,
        }

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Training: ``(proposals, {loss_cls, loss_box_reg, loss_id})``. Inference: detections
        with ``pred_embeddings`` (L2-normalised), ``{}``."""
        del images
        if not self.training:
            pred_instances = self._forward_box(features, proposals)
            return self.forward_with_given_boxes(features, pred_instances), {}
        assert targets, "'targets' argument is required during training"
        proposals = self.label_and_sample_proposals(proposals, targets)
        losses = self._forward_box(features, proposals)
        losses.update(self._forward_id(features, proposals, targets))
        return proposals, losses

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Detectron2's box branch; at inference with ``sync_free_inference``, its detections from
        :func:`~stl_search.modeling.sync_free_postprocess.fast_rcnn_candidates` (RoI pooling
        without ``repeat_interleave``), compacted with one host read for the batch."""
        if self.training or not self.sync_free_inference:
            return super()._forward_box(features, proposals)
        x = pool_boxes(
            self.box_pooler,
            [features[f] for f in self.box_in_features],
            [p.proposal_boxes for p in proposals],
        )
        predictor = self.box_predictor
        predictions = predictor(self.box_head(x))
        candidates = fast_rcnn_candidates(
            predictor.predict_boxes(predictions, proposals),
            predictor.predict_probs(predictions, proposals),
            proposals,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        return compact(candidates, [torch.isfinite(c.scores) for c in candidates])

    def static_forward(
        self,
        features: Dict[str, torch.Tensor],
        proposal_boxes: torch.Tensor,
        objectness_logits: torch.Tensor,
        image_size: Tuple[int, int],
        nms_rounds: int,
    ) -> Dict[str, torch.Tensor]:
        """Inference with static shapes (``TEST.FAST_PATH.STATIC_SHAPES``): the detections of
        :func:`~stl_search.modeling.static_postprocess.static_box_detections` and the embeddings
        of all their rows, for a batch of images of one size.

        Args:
            proposal_boxes (Tensor): ``(N, P, 4)``; objectness_logits (Tensor): ``(N, P)``,
                ``-inf`` for a dropped proposal.
            nms_rounds (int): the rounds of the box step's NMS
                (:func:`~stl_search.modeling.static_postprocess.greedy_nms_mask`).

        Returns:
            dict: ``pred_boxes (N, D, 4)`` (input frame), ``scores (N, D)``, ``pred_classes
            (N, D)``, ``pred_embeddings (N, D, E)``, ``valid (N, D)`` (bool): the detections
            in Detectron2's order, then rows with a zero box, a ``-inf`` score and a zero
            embedding; ``settled (N,)`` (bool): the NMS reached its exact keep set (where False,
            the rows are not to be used).
        """
        assert not self.training
        n = proposal_boxes.shape[0]
        proposals = [
            Instances(image_size, proposal_boxes=Boxes(b), objectness_logits=o)
            for b, o in zip(proposal_boxes.unbind(0), objectness_logits.unbind(0))
        ]
        x = pool_boxes(
            self.box_pooler,
            [features[f] for f in self.box_in_features],
            [p.proposal_boxes for p in proposals],
        )
        predictor = self.box_predictor
        predictions = predictor(self.box_head(x))
        boxes, scores, classes, settled = static_box_detections(
            torch.stack(predictor.predict_boxes(predictions, proposals)),
            torch.stack(predictor.predict_probs(predictions, proposals)),
            objectness_logits,
            image_size,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
            nms_rounds,
        )
        valid = torch.isfinite(scores)
        embeddings = self.embed(features, [Boxes(b) for b in boxes.unbind(0)])
        embeddings = embeddings.view(n, boxes.shape[1], -1)
        embeddings = torch.where(valid[..., None], embeddings, embeddings.new_zeros(()))
        return {
            "pred_boxes": boxes,
            "scores": scores,
            "pred_classes": classes,
            "pred_embeddings": embeddings,
            "valid": valid,
            "settled": settled,
        }

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances]
    ) -> List[Instances]:
        """Add ``pred_embeddings`` (L2-normalised, ``N x D``) for the ``pred_boxes`` of
        ``instances``.

        Used on the final detections and, through the meta architecture's query mode, on given
        query boxes: both go through exactly :meth:`embed`.
        """
        assert not self.training
        instances = super().forward_with_given_boxes(features, instances)
        embeddings = self.embed(features, [x.pred_boxes for x in instances])
        for inst, emb in zip(instances, embeddings.split([len(x) for x in instances])):
            inst.pred_embeddings = emb
        return instances

    def embed(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        """L2-normalised embeddings of ``boxes`` (per image, input frame), concatenated:
        ``(R, D)``, in float32 (normalised in float32 also under a reduced-precision autocast)."""
        return F.normalize(self.id_head(self.id_pooler(features, boxes)).float(), dim=1)

    # ---------------------------------------------------------------- training
    def _id_training_boxes(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> Tuple[List[Boxes], torch.Tensor]:
        """Boxes training the ID branch and their person ids (-1 = unlabeled), per
        ``id_train_boxes``."""
        boxes, ids = [], []
        if self.id_train_boxes == "gt":
            for t in targets:
                boxes.append(t.gt_boxes)
                ids.append(
                    t.gt_person_ids if t.has("gt_person_ids") else _unlabeled(len(t), t.gt_boxes)
                )
        else:
            for p in proposals:
                fg = (p.gt_classes >= 0) & (p.gt_classes < self.num_classes)
                boxes.append(p.proposal_boxes[fg])
                pid = (
                    p.gt_person_ids[fg]
                    if p.has("gt_person_ids")
                    else _unlabeled(int(fg.sum()), p.proposal_boxes)
                )
                ids.append(pid)
        return boxes, torch.cat(ids).to(torch.int64)

    def _forward_id(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: List[Instances],
    ) -> Dict[str, torch.Tensor]:
        boxes, labels = self._id_training_boxes(proposals, targets)
        if labels.numel() == 0:
            # No person in the whole batch: a zero loss that still touches every ID parameter
            # (DDP without find_unused_parameters expects gradients for all of them).
            zero = sum(p.sum() for p in self._id_parameters()) * 0.0
            return {"loss_id": zero}
        embeddings = self.id_head(self.id_pooler(features, boxes))
        return {"loss_id": self.id_loss(embeddings, labels) * self.id_loss_weight}

    def _id_parameters(self):
        for m in (self.id_pooler, self.id_head, self.id_loss):
            yield from (p for p in m.parameters() if p.requires_grad)


def _unlabeled(n: int, like: Boxes) -> torch.Tensor:
    return torch.full((n,), -1, dtype=torch.int64, device=like.tensor.device)
