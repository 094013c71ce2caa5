"""The two traceable graphs of a ``PersonSearchRCNN``: gallery (detect + embed) and query (embed).

Person search needs two graphs, not one: a gallery image goes through detection and the
identification branch; a query person, given by a box, only through the identification branch
(the model's query mode). Both wrap the *same* modules as the PyTorch model and take / return
plain tensors, so that ``torch.jit.trace`` and the ONNX exporter see neither dicts nor
``Instances`` (Detectron2's ``TracingAdapter`` flattens those, but its output schema lives only in
the exporting process; a deployed graph needs fixed, documented outputs instead).

- :class:`GalleryGraph`: ``image`` (uint8, 3 x H x W, the resized input in ``INPUT.FORMAT``
  order), ``score_thresh`` (float32 scalar) -> ``boxes`` (N x 4, XYXY in the input frame),
  ``scores`` (N), ``embeddings`` (N x D, L2-normalised).
- :class:`QueryGraph`: ``image`` as above, ``boxes`` (K x 4, input frame, K >= 1) ->
  ``embeddings`` (K x D, L2-normalised).

The identification nets return early on zero RoIs; a trace records one side of that branch
only, and the traced ops fail on an empty batch (torch's instance norm, in IBN, does). So the
gallery graph embeds one constant extra RoI and drops its row: the embedding of N detections costs
N + 1 RoIs, and an image without detections gives empty outputs in every runtime. The score
threshold is an input (``export.json`` holds the model's): a deployment can change it without
re-exporting.

:func:`prepare_for_export` copies the model to the CPU in eval mode, with Detectron2's ``RPN``
built from the config (``MODEL.PROPOSAL_GENERATOR.NAME: RPN`` on a copy of it, the model's RPN
weights loaded): a ``SyncFreeRPN``'s proposal selection has sizes that a trace would fix to the
example's; Detectron2's is written for tracing. The detections are those of
:func:`~stl_search.modeling.sync_free_postprocess.fast_rcnn_candidates`, the per-image step of the
sync-free ROI heads, whose static shapes trace as they are; the graph keeps its finite-score rows.
It also replaces the CPU-only
:class:`~stl_search.modeling.separable_roi_align.SeparableRoIAlign` (a Python loop over RoIs,
which tracing would unroll for the example's count) by Detectron2's ``ROIPooler`` with
``ROIAlignV2``: the same aligned RoI Align (torchvision's kernel, ONNX ``RoiAlign``), same numbers.
"""

from __future__ import annotations

import copy
from typing import Tuple

import torch
from detectron2.config import CfgNode
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import Boxes
from torch import nn

from ..modeling import PersonSearchRCNN, PersonSearchROIHeads
from ..modeling.separable_roi_align import SeparableRoIAlign
from ..modeling.sync_free_postprocess import fast_rcnn_candidates

__all__ = [
    "ExportNotSupportedError",
    "GalleryGraph",
    "QueryGraph",
    "check_exportable",
    "prepare_for_export",
]

#: ``(config key, supported values)``: what the two graphs reproduce exactly. Test-time
#: augmentation is not part of the model; other meta architectures, proposal generators and ROI
#: heads are not the modules these graphs call.
SUPPORTED_SETTINGS = (
    ("MODEL.META_ARCHITECTURE", ("PersonSearchRCNN",)),
    ("MODEL.PROPOSAL_GENERATOR.NAME", ("RPN", "SyncFreeRPN")),
    ("MODEL.ROI_HEADS.NAME", ("PersonSearchROIHeads",)),
    ("MODEL.ROI_BOX_HEAD.POOLER_TYPE", ("ROIAlignV2", "ROIAlign", "ROIPool")),
    ("MODEL.ID_HEAD.POOLER_TYPE", ("ROIAlignV2", "ROIAlign", "ROIPool")),
    ("MODEL.MASK_ON", (False,)),
    ("MODEL.KEYPOINT_ON", (False,)),
    ("TEST.AUG.ENABLED", (False,)),
)


class ExportNotSupportedError(ValueError):
    """The model has a setting that the exported graphs cannot reproduce; the message names it."""


def _config_value(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_exportable(cfg: CfgNode) -> None:
    """Raise :class:`ExportNotSupportedError` naming each setting outside ``SUPPORTED_SETTINGS``."""
    bad = []
    for key, supported in SUPPORTED_SETTINGS:
        value = _config_value(cfg, key)
        if value not in supported:
            bad.append(f"{key}={value!r} (supported: {', '.join(repr(s) for s in supported)})")
    if bad:
        raise ExportNotSupportedError("cannot export this model: " + "; ".join(bad))


def prepare_for_export(model: nn.Module, cfg: CfgNode) -> PersonSearchRCNN:
    """A CPU, eval-mode copy of ``model`` (built from ``cfg``) with Detectron2's ``RPN`` (built
    from ``cfg`` with ``MODEL.PROPOSAL_GENERATOR.NAME`` "RPN", same weights) and RoI poolers that
    trace to one RoI Align op each; ``model`` is left untouched."""
    if not isinstance(model, PersonSearchRCNN) or not isinstance(
        model.roi_heads, PersonSearchROIHeads
    ):
        raise ExportNotSupportedError(
            f"export needs a PersonSearchRCNN with PersonSearchROIHeads, got "
            f"{type(model).__name__} with {type(getattr(model, 'roi_heads', None)).__name__}"
        )
    model = copy.deepcopy(model).cpu().eval()
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    rpn = build_proposal_generator(plain, model.backbone.output_shape())
    rpn.load_state_dict(model.proposal_generator.state_dict())
    model.proposal_generator = rpn.eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SeparableRoIAlign):
                pooler = ROIPooler(
                    output_size=child.output_size,
                    scales=(child.spatial_scale,),
                    sampling_ratio=child.sampling_ratio,
                    pooler_type="ROIAlignV2",
                )
                setattr(parent, name, pooler)
    return model


class _ModelGraph(nn.Module):
    def __init__(self, model: PersonSearchRCNN):
        super().__init__()
        self.model = model

    def features(self, image: torch.Tensor):
        """Normalised, padded input and the base nets' features, as in the model's forward."""
        images = self.model.preprocess_image([{"image": image}])
        return images, self.model.backbone(images.tensor)


class GalleryGraph(_ModelGraph):
    """``(image, score_thresh) -> (boxes, scores, embeddings)``; see the module docstring.

    The box branch is ``StandardROIHeads._forward_box`` with the detections of
    :func:`~stl_search.modeling.sync_free_postprocess.fast_rcnn_candidates` (those of Detectron2's
    ``fast_rcnn_inference``, followed by dropped rows with a ``-inf`` score, which the graph drops),
    the threshold taken from the input; the embeddings are :meth:`PersonSearchROIHeads.embed` of
    the detections, as in the model's ``forward_with_given_boxes``.
    """

    def forward(
        self, image: torch.Tensor, score_thresh: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, features = self.features(image)
        proposals, _ = self.model.proposal_generator(images, features, None)
        heads = self.model.roi_heads
        box_features = heads.box_pooler(
            [features[f] for f in heads.box_in_features], [p.proposal_boxes for p in proposals]
        )
        predictor = heads.box_predictor
        logits, deltas = predictor(heads.box_head(box_features))
        # FastRCNNOutputLayers.predict_boxes / predict_probs for the one image, without their
        # per-image split: a traced split would fix the example's proposal count in the graph,
        # and an image with fewer proposals (fewer than POST_NMS_TOPK_TEST after NMS) would fail.
        boxes = predictor.box2box_transform.apply_deltas(deltas, proposals[0].proposal_boxes.tensor)
        sigmoid = getattr(predictor, "use_sigmoid_ce", False)  # Detectron2 main's option
        probs = logits.sigmoid() if sigmoid else torch.softmax(logits, dim=-1)
        (candidates,) = fast_rcnn_candidates(
            [boxes],
            [probs],
            proposals,
            score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        detections = candidates[torch.isfinite(candidates.scores)]
        boxes = detections.pred_boxes.tensor
        # One extra RoI, dropped from the output: the identification nets never see an empty
        # batch, which the traced graph could not run (see the module docstring).
        padded = torch.cat([boxes, boxes.new_tensor([[0.0, 0.0, 1.0, 1.0]])])
        embeddings = heads.embed(features, [Boxes(padded)])[:-1]
        return boxes, detections.scores, embeddings


class QueryGraph(_ModelGraph):
    """``(image, boxes) -> embeddings``: the model's query mode for one image."""

    def forward(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        _, features = self.features(image)
        return self.model.roi_heads.embed(features, [Boxes(boxes)])
