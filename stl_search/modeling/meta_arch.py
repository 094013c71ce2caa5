"""``PersonSearchRCNN``: the one-step person-search model (paper Fig. 2, sections 3.2-3.3).

normalise -> base nets (ResNet-IBN-a stem..res3, outputs ``res2``, ``res3``) -> RPN on ``res3``
-> :class:`~stl_search.modeling.roi_heads.PersonSearchROIHeads` (box branch + identification
branch). A ``GeneralizedRCNN`` subclass, so pre-processing and padding are Detectron2's own;
this class adds the query mode, runs each group of one kind (gallery or query) and one image size
through the network together, and overrides Detectron2's ``_postprocess`` seam with a version of
one host read per batch (same numbers). Which proposals and detections the gallery path computes
is the config's: ``MODEL.PROPOSAL_GENERATOR.NAME`` (``RPN`` or ``SyncFreeRPN``) and
``MODEL.ROI_HEADS.SYNC_FREE_INFERENCE`` (``stl_search/modeling/sync_free_postprocess.py``); with
``TEST.FAST_PATH.STATIC_SHAPES`` the gallery path is :meth:`PersonSearchRCNN.
static_gallery_forward`, tensors of fixed shapes that one compiled graph captures
(``stl_search/modeling/static_postprocess.py``), compacted afterwards.

Inputs and outputs are fixed by ``docs/interfaces.md``:

- training: train-mapper dicts -> ``{loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg, loss_id}``;
- inference, gallery dicts -> ``[{"instances": Instances(pred_boxes, scores, pred_classes,
  pred_embeddings)}]`` in the original image frame;
- inference, dicts with ``query_boxes`` (``Boxes`` in the *resized* input frame) ->
  ``[{"query_embedding": Tensor(D)}]`` (``(k, D)`` if a dict carries k > 1 boxes), through the
  identification path only.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN
from detectron2.structures import Boxes, Instances
from detectron2.utils.logger import log_first_n

from .separable_roi_align import SeparableRoIAlign
from .static_postprocess import static_proposals
from .sync_free_postprocess import SyncFreeRPN, clip_boxes, compact

__all__ = ["PersonSearchRCNN"]


@META_ARCH_REGISTRY.register()
class PersonSearchRCNN(GeneralizedRCNN):
    """One-step person search on Detectron2's R-CNN; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        inference_amp_dtype: Optional[str] = None,
        static_shapes: bool = False,
        static_nms_rounds: int = 24,
        **kwargs,
    ):
        """
        NOTE: the other arguments are those of Detectron2's ``GeneralizedRCNN``.

        Args:
            inference_amp_dtype (str or None): ``"float16"`` or ``"bfloat16"``: inference runs
                under ``torch.autocast`` in that dtype (``TEST.AMP``), with RoI pooling reading
                float32 features (box coordinates keep full precision) and every floating output
                returned in float32. None: float32 throughout.
            static_shapes (bool): gallery inference through :meth:`static_gallery_forward`
                (``TEST.FAST_PATH.STATIC_SHAPES``): the same detections and embeddings, computed
                with shapes fixed by the config and the image batch (capturable as one graph),
                compacted afterwards.
            static_nms_rounds (int): the parallel rounds of each NMS of that forward
                (``TEST.FAST_PATH.STATIC_NMS_ROUNDS``,
                :func:`~stl_search.modeling.static_postprocess.greedy_nms_mask`); a batch whose
                NMS needs more is recomputed on the dynamic path (the same numbers, slower).
        """
        super().__init__(**kwargs)
        if inference_amp_dtype not in (None, "float16", "bfloat16"):
            raise ValueError(
                f"TEST.AMP.DTYPE must be 'float16' or 'bfloat16', got {inference_amp_dtype!r}"
            )
        if isinstance(self.proposal_generator, SyncFreeRPN) and not getattr(
            self.roi_heads, "sync_free_inference", False
        ):
            raise ValueError(
                "MODEL.PROPOSAL_GENERATOR.NAME 'SyncFreeRPN' passes its dropped proposals on with "
                "a -inf objectness, which only the sync-free ROI heads skip: set "
                "MODEL.ROI_HEADS.SYNC_FREE_INFERENCE True (or use 'RPN')"
            )
        self.inference_amp_dtype = inference_amp_dtype
        self.static_shapes = static_shapes
        if static_nms_rounds < 1:
            raise ValueError(
                f"TEST.FAST_PATH.STATIC_NMS_ROUNDS must be at least 1, got {static_nms_rounds}"
            )
        self.static_nms_rounds = static_nms_rounds
        if static_shapes:
            _check_static_shapes(self)
        if inference_amp_dtype is not None:
            for m in self.modules():
                if isinstance(m, (ROIPooler, SeparableRoIAlign)):
                    m.register_forward_pre_hook(_float32_features)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["inference_amp_dtype"] = cfg.TEST.AMP.DTYPE if cfg.TEST.AMP.ENABLED else None
        ret["static_shapes"] = cfg.TEST.FAST_PATH.STATIC_SHAPES
        ret["static_nms_rounds"] = cfg.TEST.FAST_PATH.STATIC_NMS_ROUNDS
        return ret

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """Gallery inputs: detection + embeddings; inputs carrying ``query_boxes``: their
        embeddings.

        A batch may mix both kinds and image sizes: each group of one kind and one size goes
        through the network together (:meth:`_inference_group`; padding a smaller image to the
        batch's size would change the InstanceNorm statistics of IBN and the border of every
        feature map: not the same result as the image alone). Results come back in input order.
        Under ``TEST.AMP`` the forward runs in autocast and the outputs come back in float32.
        """
        assert not self.training
        results: List[Optional[Dict]] = [None] * len(batched_inputs)
        amp = self.inference_amp_dtype
        with (
            torch.autocast(device_type=self.device.type, dtype=getattr(torch, amp))
            if amp is not None
            else contextlib.nullcontext()
        ):
            for idx in _groups_of_one_kind_and_size(batched_inputs):
                dets = None if detected_instances is None else [detected_instances[i] for i in idx]
                group = [batched_inputs[i] for i in idx]
                for i, r in zip(idx, self._inference_group(group, dets, do_postprocess)):
                    results[i] = r
        if amp is None:
            return results
        if not do_postprocess:  # Instances, not dicts
            return [_outputs_to_float32({"instances": r})["instances"] for r in results]
        return [_outputs_to_float32(r) for r in results]

    def _inference_group(self, batched_inputs, detected_instances, do_postprocess):
        """Detectron2's ``GeneralizedRCNN.inference`` for images of one size, through
        :meth:`_postprocess`; for query inputs, the embeddings of their ``query_boxes`` through
        :meth:`PersonSearchROIHeads.embed` (the function that embeds the final detections of a
        gallery image), no detection. With ``static_shapes``, gallery images go through
        :meth:`static_gallery_forward`, or, where its NMS did not settle, this dynamic path."""
        if (
            self.static_shapes
            and detected_instances is None
            and "query_boxes" not in batched_inputs[0]
        ):
            size = tuple(batched_inputs[0]["image"].shape[-2:])
            out = self.static_gallery_forward(torch.stack([x["image"] for x in batched_inputs]))
            if bool(out["settled"].all()):
                return self._static_results(out, batched_inputs, size, do_postprocess)
            log_first_n(
                logging.WARNING,
                "An NMS of the static-shape forward needed more than "
                f"TEST.FAST_PATH.STATIC_NMS_ROUNDS={self.static_nms_rounds} rounds: that batch "
                "is recomputed on the dynamic path (the same numbers, slower); raise the key "
                "if this is frequent",
                name=__name__,
            )
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if "query_boxes" in batched_inputs[0]:
            boxes = [_as_boxes(x["query_boxes"]).to(self.device) for x in batched_inputs]
            embeddings = self.roi_heads.embed(features, boxes).split([len(b) for b in boxes])
            return [{"query_embedding": e[0] if e.shape[0] == 1 else e} for e in embeddings]
        if detected_instances is not None:
            detected_instances = [x.to(self.device) for x in detected_instances]
            results = self.roi_heads.forward_with_given_boxes(features, detected_instances)
        else:
            if self.proposal_generator is not None:
                proposals, _ = self.proposal_generator(images, features, None)
            else:
                proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            results, _ = self.roi_heads(images, features, proposals, None)
        if do_postprocess:
            return self._postprocess(results, batched_inputs, images.image_sizes)
        return results

    def _static_results(self, out, batched_inputs, size, do_postprocess):
        """:meth:`static_gallery_forward`'s tensors as ``_inference_group``'s results, compacted
        (the padding rows have an empty box: ``_postprocess``'s one read per batch drops them)."""
        results = [
            Instances(size, pred_boxes=Boxes(b), scores=s, pred_classes=c, pred_embeddings=e)
            for b, s, c, e in zip(
                out["pred_boxes"], out["scores"], out["pred_classes"], out["pred_embeddings"]
            )
        ]
        if do_postprocess:
            return self._postprocess(results, batched_inputs, [size] * len(results))
        return compact(results, list(out["valid"]))

    def static_gallery_forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Gallery inference of a batch of images of one size with static shapes: tensors in,
        tensors out, no host read, so that ``torch.compile(..., fullgraph=True)`` captures it
        as one graph (one CUDA graph under ``mode="reduce-overhead"``).

        Args:
            images (Tensor): ``(N, 3, H, W)``, the mapper's ``image`` tensors stacked.

        Returns:
            dict: :meth:`PersonSearchROIHeads.static_forward`'s tensors, boxes in the ``H x W``
            frame; rows with ``valid`` False are padding (zero box, ``-inf`` score). ``settled
            (N,)`` is False for an image where an NMS (the RPN's or the box step's) did not
            reach its exact keep set in ``static_nms_rounds`` rounds: its rows are not to be
            used (:meth:`_inference_group` recomputes that batch on the dynamic path).
        """
        assert not self.training
        h, w = images.shape[-2:]
        x = (images.to(self.device) - self.pixel_mean) / self.pixel_std
        d = self.backbone.size_divisibility
        if d > 1:  # ImageList.from_tensors' zero padding, with sizes known statically
            x = F.pad(x, (0, (-w) % d, 0, (-h) % d), value=0.0)
        features = self.backbone(x)
        rounds = self.static_nms_rounds
        boxes, logits, rpn_settled = static_proposals(
            self.proposal_generator, features, (h, w), rounds
        )
        out = self.roi_heads.static_forward(features, boxes, logits, (h, w), rounds)
        out["settled"] = out["settled"] & rpn_settled
        return out

    @staticmethod
    def _postprocess(instances, batched_inputs: List[Dict], image_sizes):
        """Detectron2's ``GeneralizedRCNN._postprocess`` (``detector_postprocess``: boxes scaled
        to the ``height`` x ``width`` frame, clipped, empty ones dropped) with one host read for
        the batch (:func:`~stl_search.modeling.sync_free_postprocess.compact`) instead of a
        finiteness assert and a ``nonzero`` per image. The same numbers."""
        if any(x.has("pred_masks") or x.has("pred_keypoints") for x in instances):
            return GeneralizedRCNN._postprocess(instances, batched_inputs, image_sizes)
        results = []
        for inst, x, size in zip(instances, batched_inputs, image_sizes):
            out_h, out_w = x.get("height", size[0]), x.get("width", size[1])
            boxes = Boxes(inst.pred_boxes.tensor.clone())
            boxes.scale(out_w / size[1], out_h / size[0])
            result = Instances((out_h, out_w), **inst.get_fields())
            result.pred_boxes = Boxes(clip_boxes(boxes.tensor, (out_h, out_w)))
            results.append(result)
        results = compact(results, [r.pred_boxes.nonempty() for r in results])
        return [{"instances": r} for r in results]


def _check_static_shapes(model: "PersonSearchRCNN") -> None:
    """Raise if ``model`` has a part the static-shape gallery forward does not cover."""
    if not isinstance(model.proposal_generator, RPN):
        raise ValueError(
            "TEST.FAST_PATH.STATIC_SHAPES needs an RPN (MODEL.PROPOSAL_GENERATOR.NAME 'RPN' or "
            f"'SyncFreeRPN'), got {type(model.proposal_generator).__name__}"
        )
    if not hasattr(model.roi_heads, "static_forward") or model.roi_heads.mask_on:
        raise ValueError(
            "TEST.FAST_PATH.STATIC_SHAPES needs MODEL.ROI_HEADS.NAME 'PersonSearchROIHeads' "
            "without a mask head"
        )


def _float32_features(module, args):
    """Forward pre-hook of a RoI pooler under autocast: pool from float32 feature maps."""
    features, *rest = args
    return ([f.float() for f in features], *rest)


def _outputs_to_float32(result: Dict) -> Dict:
    """One image's result with every floating tensor (also inside ``Instances``) in float32."""
    out = {}
    for key, value in result.items():
        if isinstance(value, Instances):
            inst = Instances(value.image_size)
            for name, field in value.get_fields().items():
                if isinstance(field, torch.Tensor) and field.is_floating_point():
                    field = field.float()
                elif isinstance(field, Boxes):
                    field = Boxes(field.tensor.float())
                inst.set(name, field)
            value = inst
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.float()
        out[key] = value
    return out


def _as_boxes(b) -> Boxes:
    if isinstance(b, Boxes):
        return b
    return Boxes(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4))


def _groups_of_one_kind_and_size(batched_inputs: List[Dict]) -> List[List[int]]:
    """Indices of the inputs, grouped by (gallery or query, image size), in first-seen order."""
    groups: Dict[tuple, List[int]] = {}
    for i, x in enumerate(batched_inputs):
        groups.setdefault(("query_boxes" in x, tuple(x["image"].shape[-2:])), []).append(i)
    return list(groups.values())
