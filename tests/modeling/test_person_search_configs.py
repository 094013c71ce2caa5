"""The person-search YAML configs merge after add_stl_search_config, with the paper's settings."""

from __future__ import annotations

import glob
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from stl_search.config import add_stl_search_config

from .helpers import synthetic_input

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    [os.path.join(REPO, "configs", "Base-PersonSearch.yaml")]
    + glob.glob(os.path.join(REPO, "configs", "PRW", "*.yaml"))
    + glob.glob(os.path.join(REPO, "configs", "CUHK-SYSU", "*.yaml"))
    + glob.glob(os.path.join(REPO, "configs", "synthetic", "*.yaml"))
)


def _load(path: str):
    cfg = add_stl_search_config(get_cfg())
    cfg.merge_from_file(path, allow_unsafe=False)
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_merges_with_paper_settings(path):
    cfg = _load(path)
    m = cfg.MODEL
    assert m.META_ARCHITECTURE == "PersonSearchRCNN" and m.ROI_HEADS.NAME == "PersonSearchROIHeads"
    assert m.BACKBONE.NAME == "build_resnet_ibn_backbone"
    assert list(m.RESNETS.OUT_FEATURES) == ["res2", "res3"] and not m.RESNETS.STRIDE_IN_1X1
    assert list(m.RPN.IN_FEATURES) == ["res3"] and list(m.ROI_HEADS.IN_FEATURES) == ["res3"]
    assert list(m.ANCHOR_GENERATOR.ASPECT_RATIOS) == [[1.0, 2.0, 3.0]]
    assert m.ROI_HEADS.SCORE_THRESH_TEST == 0.5 and m.ROI_HEADS.NMS_THRESH_TEST == 0.3
    assert m.ROI_HEADS.BATCH_SIZE_PER_IMAGE in (128, 64) and m.ROI_HEADS.POSITIVE_FRACTION == 0.25
    assert min(m.PIXEL_STD) > 10  # real ImageNet std in 0-255 units, never [1, 1, 1]
    assert cfg.INPUT.FORMAT == "RGB"
    # Inference on the exact fast path by default; TF32 rounds, so it stays an explicit choice.
    fast_path = cfg.TEST.FAST_PATH
    assert fast_path.FOLD_BN and fast_path.CHANNELS_LAST
    # The sync-free post-processing, selected by name (the reference RPN would not skip its
    # dropped proposals).
    assert m.PROPOSAL_GENERATOR.NAME == "SyncFreeRPN" and m.ROI_HEADS.SYNC_FREE_INFERENCE
    assert not cfg.TEST.FAST_PATH.TF32
    if "synthetic" not in path:
        assert m.RESNETS.DEPTH == 50 and m.ID_HEAD.EMBEDDING_DIM == 2048
        assert tuple(m.ID_HEAD.POOLER_RESOLUTION) == (32, 16) and tuple(m.MRFP.LOW_RESOLUTION) == (
            64,
            32,
        )
        assert (m.RPN.PRE_NMS_TOPK_TRAIN, m.RPN.POST_NMS_TOPK_TRAIN) == (12000, 2000)
        assert (m.RPN.PRE_NMS_TOPK_TEST, m.RPN.POST_NMS_TOPK_TEST) == (6000, 300)
        assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (640, 960)
        assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.005
        assert cfg.SOLVER.WEIGHT_DECAY == 1e-4
    name = os.path.basename(path)
    if name.startswith(("random_init", "imagenet", "stl")):
        assert m.MRFP.ENABLED == ("mrfp" in name)
        assert (m.WEIGHTS == "") == name.startswith("random_init")
    if os.path.basename(os.path.dirname(path)) in ("PRW", "CUHK-SYSU") and not name.startswith(
        "Base"
    ):
        # 20 epochs, lr drop after 12: STEPS / MAX_ITER = 12 / 20.
        assert abs(cfg.SOLVER.STEPS[0] / cfg.SOLVER.MAX_ITER - 0.6) < 1e-3
        assert cfg.DATASETS.TRAIN and cfg.DATASETS.TEST and cfg.DATASETS.QUERY


def test_synthetic_config_builds_and_trains_one_step():
    cfg = _load(os.path.join(REPO, "configs", "synthetic", "person_search.yaml"))
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 7  # do not read (or generate) the synthetic set here
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).train()
    assert model.roi_heads.id_head.embedding_dim == 256
    with EventStorage(0):
        losses = model([synthetic_input(96, 160, seed=0), synthetic_input(96, 160, seed=1)])
    assert all(torch.isfinite(v) for v in losses.values())
