"""``PersonSearchPredictor``: Detectron2's ``DefaultPredictor`` for person search.

Built from a config: :func:`~stl_search.engine.model.build_inference_model` loads
``MODEL.WEIGHTS`` (the project's checkpointer, no pickled code, no training set needed). Two
calls, both through exactly the pieces the evaluation uses:

- :meth:`PersonSearchPredictor.detect`: scene images -> per image the detected persons' boxes,
  detection scores and L2-normalised embeddings (one forward per list of images);
- :meth:`PersonSearchPredictor.embed_query`: one image and one or many person boxes -> their
  embeddings, through the model's query mode (no detection).

Pre-processing is :class:`~stl_search.data.mapper.PersonSearchDatasetMapper` in its ``test`` and
``query`` modes (the evaluation's loaders use the same mapper), the forward is the model's own.
Data loaders that already map their records (the index build) call :meth:`detect_mapped`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Union

import numpy as np
import torch

from ..data.mapper import PersonSearchDatasetMapper
from ..modeling.fast_path import prepare_inference_model
from ..utils.images import read_image
from .model import build_inference_model

__all__ = ["Detections", "PersonSearchPredictor", "ImageLike"]

#: An image path, a BGR ``H x W x 3`` uint8 array (as ``cv2.imread`` returns), or a data set dict
#: (``file_name``, optionally ``image`` already in ``INPUT.FORMAT``).
ImageLike = Union[str, np.ndarray, Dict]


@dataclass
class Detections:
    """The persons detected in one image, in its own pixel frame.

    Attributes:
        boxes: ``(N, 4)`` float32, XYXY absolute.
        scores: ``(N,)`` float32 detection scores.
        embeddings: ``(N, D)`` float32, L2-normalised.
    """

    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


class PersonSearchPredictor:
    """Detect persons and embed query boxes with a trained person-search model.

    Args:
        cfg: a config with ``MODEL.WEIGHTS`` (cloned; the model is built and loaded by
            ``build_inference_model``, in eval mode).
        model: an already built and loaded model to use instead; then ``MODEL.WEIGHTS`` is not
            read. A torch model (plain, or the trainer's ``DistributedDataParallel``) or one
            that is already prepared (an exported model, ``ExportedPersonSearch``): all go
            through :func:`~stl_search.modeling.fast_path.prepare_inference_model`, which folds
            and converts a torch model once (a copy under ``TEST.FAST_PATH``) and takes a
            prepared one as it is. Make one predictor per process and pass it around (search,
            index build): a second predictor on ``predictor.model`` would not prepare it again,
            but a second predictor on the original model would copy it again.

    Attributes:
        gallery_mapper, query_mapper: the evaluation's mapper in ``test`` / ``query`` mode.
        input_format: ``INPUT.FORMAT``, the channel order the model expects.
    """

    def __init__(self, cfg, model: torch.nn.Module = None):
        self.cfg = cfg.clone()
        if model is None:
            if self.cfg.MODEL.WEIGHTS and not os.path.isfile(self.cfg.MODEL.WEIGHTS):
                raise FileNotFoundError(f"MODEL.WEIGHTS {self.cfg.MODEL.WEIGHTS} does not exist")
            model = build_inference_model(self.cfg)  # needs no training set
        self.model = prepare_inference_model(model, self.cfg).eval()  # TEST.FAST_PATH
        self.gallery_mapper = PersonSearchDatasetMapper(self.cfg, mode="test")
        self.query_mapper = PersonSearchDatasetMapper(self.cfg, mode="query")
        self.input_format = self.cfg.INPUT.FORMAT

    # ---------------------------------------------------------------- inputs
    def as_record(self, image: ImageLike) -> Dict:
        """A data set dict for ``image`` with its pixels (``image``, in ``INPUT.FORMAT``),
        ``height`` and ``width``; a path is read as the evaluation reads it."""
        if isinstance(image, dict):
            record = dict(image)
        elif isinstance(image, str):
            record = {"file_name": image, "image_id": os.path.basename(image)}
        elif isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"an image array must be H x W x 3 uint8 (BGR), got {image.shape} {image.dtype}"
                )
            pixels = image[:, :, ::-1] if self.input_format == "RGB" else image
            record = {"file_name": "<array>", "image_id": "<array>", "image": pixels}
        else:
            raise TypeError(f"an image is a path, a BGR array or a dict, got {type(image)}")
        if record.get("image") is None:
            record["image"] = read_image(record["file_name"], self.input_format)
        record["height"], record["width"] = record["image"].shape[:2]
        return record

    # ---------------------------------------------------------------- gallery
    @torch.no_grad()
    def detect_mapped(self, inputs: List[Dict]) -> List[Detections]:
        """One forward over gallery-mapper outputs (a batch) -> their :class:`Detections`."""
        if not inputs:
            return []
        return [_detections(out["instances"]) for out in self.model(inputs)]

    def detect(self, images: Sequence[ImageLike]) -> List[Detections]:
        """The persons of each image (one forward for the whole list; pass as many as fit)."""
        return self.detect_mapped([self.gallery_mapper(self.as_record(im)) for im in images])

    # ---------------------------------------------------------------- queries
    @torch.no_grad()
    def embed_query(self, image: ImageLike, boxes) -> np.ndarray:
        """Embeddings ``(k, D)`` float32 of the person boxes ``boxes`` (``(4,)`` or ``(k, 4)``,
        XYXY in the image's pixels) of ``image``; a single ``(4,)`` box gives ``(D,)``.

        Raises:
            ValueError: naming the box and the image when less than half of a box lies in the
                image (boxes are clipped to the image, as in evaluation).
        """
        record = self.as_record(image)
        single = np.ndim(boxes) == 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        width, height = record["width"], record["height"]
        for x1, y1, x2, y2 in boxes:
            # The mapper clips a box to the image, as the annotated query boxes of the data sets
            # may overhang it by a few pixels; a box mostly outside the image is a mistake.
            inside = max(min(x2, width) - max(x1, 0), 0) * max(min(y2, height) - max(y1, 0), 0)
            if not (x2 - x1 >= 1 and y2 - y1 >= 1):  # also NaN: a person is at least a pixel
                raise ValueError(
                    f"box {[float(x1), float(y1), float(x2), float(y2)]} of {record['file_name']}"
                    " is not a person box: x2 - x1 and y2 - y1 must be at least 1 pixel"
                )
            if not inside >= 0.5 * (x2 - x1) * (y2 - y1):
                raise ValueError(
                    f"box {[float(x1), float(y1), float(x2), float(y2)]} is not a box inside "
                    f"{record['file_name']} ({width}x{height}): less than half of it lies in it"
                )
        record.update(query_box=boxes, identity=-1, query_index=0)
        out = self.model([self.query_mapper(record)])[0]["query_embedding"]
        embeddings = out.detach().float().cpu().numpy().reshape(len(boxes), -1)
        return embeddings[0] if single else embeddings


def _detections(instances) -> Detections:
    instances = instances.to("cpu")
    return Detections(
        boxes=instances.pred_boxes.tensor.numpy().astype(np.float32).reshape(-1, 4),
        scores=instances.scores.numpy().astype(np.float32),
        embeddings=instances.pred_embeddings.numpy().astype(np.float32),
    )
