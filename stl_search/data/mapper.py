"""``PersonSearchDatasetMapper``: data set dicts → model inputs, for training, gallery and queries.

The paper resizes every image by one factor so that its shorter side is 640 unless the longer
would then exceed 960: Detectron2's ``ResizeShortestEdge(INPUT.MIN_SIZE_*, INPUT.MAX_SIZE_*)``
is exactly that rule. The only training augmentation is a horizontal flip
(``INPUT.HFLIP_PROB``). Person identities travel with the boxes as ``gt_person_ids``.

Images are read by :func:`stl_search.utils.images.read_image`, which names the file in any
decoding error (data set loaders read only image headers, so a bad image shows up here).
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Sequence, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, BoxMode

from ..utils.images import read_image

logger = logging.getLogger(__name__)

__all__ = ["PersonSearchDatasetMapper", "build_person_search_augmentations"]

MODES = ("train", "test", "query")


def build_person_search_augmentations(cfg, is_train: bool) -> List[T.Augmentation]:
    """Detectron2's ``build_augmentation``: ``ResizeShortestEdge`` with ``INPUT.{MIN,MAX}_SIZE_*``
    (the paper's resize rule) and, in training, ``RandomFlip`` (``INPUT.RANDOM_FLIP``) whose
    probability is ``INPUT.HFLIP_PROB`` (Detectron2 fixes it at 0.5; 0 drops the flip)."""
    augs = utils.build_augmentation(cfg, is_train)
    if is_train and isinstance(augs[-1], T.RandomFlip):
        if cfg.INPUT.HFLIP_PROB > 0:
            augs[-1].prob = cfg.INPUT.HFLIP_PROB
        else:
            augs.pop()
    return augs


class PersonSearchDatasetMapper:
    """Map one data set dict (docs/interfaces.md) to a model input dict.

    - ``train``: ``image``, ``height``, ``width``, ``image_id``, ``instances`` (``gt_boxes``,
      ``gt_classes`` = 0, ``gt_person_ids`` int64, -1 = unlabeled; boxes empty after resizing and
      clipping are removed);
    - ``test`` (gallery): ``image`` plus every field of the dict (``annotations`` untouched, in the
      original frame, for the evaluator);
    - ``query``: ``image`` plus the dict's fields and ``query_boxes`` (``Boxes`` k×4 in the resized
      input frame; ``query_box`` is one box, or k boxes of the same image).
    A dict may carry its pixels as ``image`` (H×W×3 uint8 in ``INPUT.FORMAT``, e.g. a video frame)
    instead of a file to read.
    ``height`` / ``width`` stay those of the original image (Detectron2's post-processing rescales
    the outputs to them).
    """

    @configurable
    def __init__(
        self,
        *,
        mode: str,
        augmentations: Sequence[Union[T.Augmentation, T.Transform]],
        image_format: str = "BGR",
    ):
        """
        Args:
            mode: ``"train"``, ``"test"`` (gallery) or ``"query"``: what the output holds (above).
            augmentations: applied in order to the image, then to its boxes (training instances,
                query box); :func:`build_person_search_augmentations` builds them from a config.
            image_format: format :func:`detectron2.data.detection_utils.read_image` reads the
                image into (``INPUT.FORMAT``).
        """
        if mode not in MODES:
            raise ValueError(
                f"PersonSearchDatasetMapper: mode must be one of {MODES}, got {mode!r}"
            )
        self.mode = mode
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        logger.info("PersonSearchDatasetMapper(%s): %s", mode, augmentations)

    @classmethod
    def from_config(cls, cfg, mode: str = "train") -> Dict[str, Any]:
        return {
            "mode": mode,
            "augmentations": build_person_search_augmentations(cfg, is_train=mode == "train"),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = dataset_dict.get("image")
        if image is None:
            image = read_image(dataset_dict["file_name"], self.image_format)
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if self.mode == "train":
            annos = [
                utils.transform_instance_annotations(a, transforms, image_shape)
                for a in dataset_dict.pop("annotations", [])
            ]
            instances = utils.annotations_to_instances(annos, image_shape)
            instances.gt_person_ids = torch.tensor(
                [int(a["person_id"]) for a in annos], dtype=torch.int64
            )
            dataset_dict["instances"] = utils.filter_empty_instances(instances)
        elif self.mode == "query":
            box = BoxMode.convert(
                np.asarray(dataset_dict["query_box"], dtype=np.float64).reshape(-1, 4),
                dataset_dict.get("query_box_mode", BoxMode.XYXY_ABS),
                BoxMode.XYXY_ABS,
            )
            box = transforms.apply_box(box)
            boxes = Boxes(torch.as_tensor(box, dtype=torch.float32))
            boxes.clip(image_shape)
            if not bool(boxes.nonempty().all()):
                raise ValueError(
                    f"{dataset_dict['file_name']}: query box {dataset_dict['query_box']} is empty "
                    f"inside the image ({dataset_dict['width']}x{dataset_dict['height']})"
                )
            dataset_dict["query_boxes"] = boxes
        return dataset_dict
