"""Helpers for the modeling tests (imported by name: pytest puts this folder on ``sys.path``)."""
from __future__ import annotations

import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

import stl_search.modeling  # noqa: F401  (registers the components)
from stl_search.config import add_stl_search_config


def tiny_cfg(depth: int = 50):
    """A narrow ResNet-IBN-a person-search config (res5 = 256 channels) for CPU tests."""
    cfg = add_stl_search_config(get_cfg())
    cfg.MODEL.META_ARCHITECTURE = "PersonSearchRCNN"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_ibn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    r = cfg.MODEL.RESNETS
    r.DEPTH = depth
    r.NORM = "BN"
    r.STRIDE_IN_1X1 = False
    r.OUT_FEATURES = ["res2", "res3"]
    r.STEM_OUT_CHANNELS = 8
    r.RES2_OUT_CHANNELS = 32 if depth >= 50 else 8
    r.WIDTH_PER_GROUP = 8
    cfg.MODEL.ID_HEAD.EMBEDDING_DIM = 256 if depth >= 50 else 64
    cfg.MODEL.PIXEL_MEAN = [103.53, 116.28, 123.675]
    cfg.MODEL.PIXEL_STD = [57.375, 57.12, 58.395]
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 5
    cfg.MODEL.PERSON_SEARCH.OIM_QUEUE_SIZE = 16
    cfg.MODEL.RPN.IN_FEATURES = ["res3"]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32, 64]]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.0, 2.0, 3.0]]
    cfg.MODEL.ROI_HEADS.NAME = "PersonSearchROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res3"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
    cfg.MODEL.ID_HEAD.POOLER_RESOLUTION = (8, 4)
    cfg.MODEL.MRFP.LOW_RESOLUTION = (16, 8)
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.INPUT.MAX_SIZE_TEST = 160
    return cfg


def synthetic_input(h: int = 96, w: int = 64, seed: int = 0, n_persons: int = 3):
    """One training dict: a uint8 image with bright tall rectangles as 'persons' and their boxes."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 60, (3, h, w), dtype=torch.uint8, generator=g)
    boxes = []
    pw, ph = w // 5, h // 2
    for i in range(n_persons):
        x1 = 2 + i * (pw + 4)
        y1 = 4 + (i * 7) % (h - ph - 4)
        color = torch.tensor([(200 - 60 * i) % 256, (60 + 70 * i) % 256, 120], dtype=torch.uint8)[:, None, None]
        img[:, y1 : y1 + ph, x1 : x1 + pw] = color
        boxes.append([x1, y1, x1 + pw, y1 + ph])
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.zeros(n_persons, dtype=torch.int64)
    ids = torch.arange(n_persons, dtype=torch.int64)
    if n_persons > 1:
        ids[-1] = -1  # the last person is unlabeled
    inst.gt_person_ids = ids
    return {"image": img, "height": h, "width": w, "image_id": f"s{seed}.jpg", "instances": inst}
