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
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, Instances

__all__ = ["PersonSearchRCNN"]


@META_ARCH_REGISTRY.register()
class PersonSearchRCNN(GeneralizedRCNN):
    """One-step person search on Detectron2's R-CNN; see the module docstring."""

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """Gallery inputs: detection + embeddings; inputs carrying ``query_boxes``: their
        embeddings.

        A batch may mix both kinds; results come back in input order.
        """
        assert not self.training
        is_query = ["query_boxes" in x for x in batched_inputs]
        if detected_instances is not None or not any(is_query):
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        if all(is_query):
            return self.query_inference(batched_inputs)
        queries = self.query_inference([x for x, q in zip(batched_inputs, is_query) if q])
        gallery = super().inference(
            [x for x, q in zip(batched_inputs, is_query) if not q], None, do_postprocess
        )
        q_iter, g_iter = iter(queries), iter(gallery)
        return [next(q_iter) if q else next(g_iter) for q in is_query]

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


def _as_boxes(b) -> Boxes:
    if isinstance(b, Boxes):
        return b
    return Boxes(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4))
