"""``PersonSearchRCNN``: the one-step person-search model (paper Fig. 2, sections 3.2-3.3).

normalise -> base nets (ResNet-IBN-a stem..res3, outputs ``res2``, ``res3``) -> RPN on ``res3``
-> :class:`~stl_search.modeling.roi_heads.PersonSearchROIHeads` (box branch + identification
branch). A ``GeneralizedRCNN`` subclass, so pre-processing, padding and post-processing are
Detectron2's own; this class adds the query mode.

Inputs and outputs are fixed by ``docs/interfaces.md``:

- training: train-mapper dicts -> ``{loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg, loss_id}``;
- inference, gallery dicts -> ``[{"instances": Instances(pred_boxes, scores, pred_classes,
  pred_embeddings)}]`` in the original image frame;
- inference, dicts with ``query_boxes`` (``Boxes`` in the *resized* input frame) ->
  ``[{"query_embedding": Tensor(D)}]`` (``(k, D)`` if a dict carries k > 1 boxes), through the
  identification path only.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes, Instances

from .separable_roi_align import SeparableRoIAlign
from .sync_free_postprocess import SyncFreeRPN, sync_free_inference

__all__ = ["PersonSearchRCNN"]


@META_ARCH_REGISTRY.register()
class PersonSearchRCNN(GeneralizedRCNN):
    """One-step person search on Detectron2's R-CNN; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        inference_amp_dtype: Optional[str] = None,
        sync_free_postprocess: bool = False,
        **kwargs,
    ):
        """
        NOTE: the other arguments are those of Detectron2's ``GeneralizedRCNN``.

        Args:
            inference_amp_dtype (str or None): ``"float16"`` or ``"bfloat16"``: inference runs
                under ``torch.autocast`` in that dtype (``TEST.AMP``), with RoI pooling reading
                float32 features (box coordinates keep full precision) and every floating output
                returned in float32. None: float32 throughout.
            sync_free_postprocess (bool): gallery inference through
                :func:`~stl_search.modeling.sync_free_postprocess.sync_free_inference` (the same
                detections, without Detectron2's host reads between the post-processing steps;
                ``TEST.FAST_PATH.SYNC_FREE_POSTPROCESS``). Its proposals are sync-free only from a
                :class:`~stl_search.modeling.sync_free_postprocess.SyncFreeRPN`, which
                :meth:`from_config` builds in place of Detectron2's ``RPN`` when the key is on.
        """
        super().__init__(**kwargs)
        if inference_amp_dtype not in (None, "float16", "bfloat16"):
            raise ValueError(
                f"TEST.AMP.DTYPE must be 'float16' or 'bfloat16', got {inference_amp_dtype!r}"
            )
        self.inference_amp_dtype = inference_amp_dtype
        self.sync_free_postprocess = sync_free_postprocess
        if inference_amp_dtype is not None:
            for m in self.modules():
                if isinstance(m, (ROIPooler, SeparableRoIAlign)):
                    m.register_forward_pre_hook(_float32_features)

    @classmethod
    def from_config(cls, cfg):
        sync_free = cfg.TEST.FAST_PATH.SYNC_FREE_POSTPROCESS
        if sync_free and cfg.MODEL.PROPOSAL_GENERATOR.NAME == "RPN":
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.PROPOSAL_GENERATOR.NAME = SyncFreeRPN.__name__
        ret = super().from_config(cfg)
        ret["inference_amp_dtype"] = cfg.TEST.AMP.DTYPE if cfg.TEST.AMP.ENABLED else None
        ret["sync_free_postprocess"] = sync_free
        return ret

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """Gallery inputs: detection + embeddings; inputs carrying ``query_boxes``: their
        embeddings.

        A batch may mix both kinds; results come back in input order. Under ``TEST.AMP`` the
        forward runs in autocast and the outputs come back in float32.
        """
        assert not self.training
        if self.inference_amp_dtype is None:
            return self._inference(batched_inputs, detected_instances, do_postprocess)
        dtype = getattr(torch, self.inference_amp_dtype)
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            results = self._inference(batched_inputs, detected_instances, do_postprocess)
        return [_outputs_to_float32(r) for r in results]

    def _inference(self, batched_inputs, detected_instances, do_postprocess):
        """Images of one size go through the network together; a batch of several sizes is run
        as one sub-batch per size. (Padding a smaller image to the batch's size would change the
        InstanceNorm statistics of IBN and the border of every feature map: not the same result
        as the image alone.)"""
        groups: Dict[tuple, List[int]] = {}
        for i, x in enumerate(batched_inputs):
            groups.setdefault(tuple(x["image"].shape[-2:]), []).append(i)
        if len(groups) == 1:
            return self._inference_one_size(batched_inputs, detected_instances, do_postprocess)
        results: List[Optional[Dict]] = [None] * len(batched_inputs)
        for idx in groups.values():
            dets = None if detected_instances is None else [detected_instances[i] for i in idx]
            part = self._inference_one_size([batched_inputs[i] for i in idx], dets, do_postprocess)
            for i, r in zip(idx, part):
                results[i] = r
        return results

    def _inference_one_size(self, batched_inputs, detected_instances, do_postprocess):
        is_query = ["query_boxes" in x for x in batched_inputs]
        if detected_instances is not None:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        if not any(is_query):
            return self._gallery_inference(batched_inputs, do_postprocess)
        if all(is_query):
            return self.query_inference(batched_inputs)
        queries = self.query_inference([x for x, q in zip(batched_inputs, is_query) if q])
        gallery = self._gallery_inference(
            [x for x, q in zip(batched_inputs, is_query) if not q], do_postprocess
        )
        q_iter, g_iter = iter(queries), iter(gallery)
        return [next(q_iter) if q else next(g_iter) for q in is_query]

    def _gallery_inference(self, batched_inputs, do_postprocess):
        if self.sync_free_postprocess:
            return sync_free_inference(self, batched_inputs, do_postprocess)
        return super().inference(batched_inputs, None, do_postprocess)

    @torch.no_grad()
    def query_inference(self, batched_inputs: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        """Embeddings of the given ``query_boxes`` (resized input frame), no detection.

        The boxes go through :meth:`PersonSearchROIHeads.embed`, the same function that embeds
        the final detections in a gallery forward.
        """
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        boxes = [_as_boxes(x["query_boxes"]).to(self.device) for x in batched_inputs]
        embeddings = self.roi_heads.embed(features, boxes)
        out = []
        for emb in embeddings.split([len(b) for b in boxes]):
            out.append({"query_embedding": emb[0] if emb.shape[0] == 1 else emb})
        return out


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
