"""Tiny configs shared by the modeling and STL tests: narrow ResNet-IBN-a models that train in
seconds on one CPU thread."""

from __future__ import annotations

from detectron2.config import CfgNode, get_cfg

import stl_search  # noqa: F401  (registers components and data sets)
from stl_search.config import add_stl_search_config


def narrow_backbone_cfg(depth: int = 50) -> CfgNode:
    """A config with a narrow ResNet-IBN-a (res5 = 256 channels at depth >= 50) on the CPU."""
    cfg = add_stl_search_config(get_cfg())
    r = cfg.MODEL.RESNETS
    r.DEPTH = depth
    r.NORM = "BN"
    r.STRIDE_IN_1X1 = False
    r.STEM_OUT_CHANNELS = 8
    r.RES2_OUT_CHANNELS = 32 if depth >= 50 else 8
    r.WIDTH_PER_GROUP = 8
    cfg.MODEL.BACKBONE.NAME = "build_resnet_ibn_backbone"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.PIXEL_MEAN = [103.53, 116.28, 123.675]
    cfg.MODEL.PIXEL_STD = [57.375, 57.12, 58.395]
    return cfg


def tiny_person_search_cfg(depth: int = 50, mrfp: bool = True, freeze_at: int = 0) -> CfgNode:
    """The person-search model on :func:`narrow_backbone_cfg`, with a small detector (few proposals,
    small RoIs) so that a forward and backward pass takes well under a second."""
    cfg = narrow_backbone_cfg(depth)
    cfg.MODEL.META_ARCHITECTURE = "PersonSearchRCNN"
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3"]
    cfg.MODEL.ID_HEAD.EMBEDDING_DIM = 256 if depth >= 50 else 64
    cfg.MODEL.MRFP.ENABLED = mrfp
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


#: ``load_config`` overrides for a short person-search training run: 2 images of at most 160 px.
SHORT_TRAIN_OPTS = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "INPUT.MIN_SIZE_TRAIN",
    "(96,)",
    "INPUT.MAX_SIZE_TRAIN",
    "160",
]

#: ``load_config`` overrides for a one-epoch STL pretraining of 3 iterations, evaluated at the end.
SHORT_PRETRAINING_OPTS = [
    "REID.SOLVER.MAX_EPOCHS",
    "1",
    "REID.SOLVER.ITERS_PER_EPOCH",
    "3",
    "REID.SOLVER.WARMUP_EPOCHS",
    "0",
    "REID.TEST_PERIOD_EPOCHS",
    "0",
]


def train_only_datasets(prefix: str) -> list:
    """``load_config`` overrides: train on ``<prefix>_train``, no test or query set."""
    return ["DATASETS.TRAIN", f"('{prefix}_train',)", "DATASETS.TEST", "()", "DATASETS.QUERY", "()"]
