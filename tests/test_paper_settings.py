"""The paper's settings, pinned: a change to any of them fails here with the paper's value.

Each check reads the merged YAML config and, where a value only means something once built
(anchor shapes, layer widths, RoI sizes, strides, augmentations), the built object. "Paper"
values are the paper's own (sections 3.2, 3.3, 4.3); "authors' code" values are those the paper
leaves open (docs/paper-details.md). The fast variants (``fast_*.yaml``) and the stride-8 anchor
reading (``*_anchors_stride8.yaml``) depart from the paper on purpose and are not paper configs.
"""

from __future__ import annotations

import glob
import math
import os
import re

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

from stl_search.config import add_stl_search_config
from stl_search.data.mapper import build_person_search_augmentations
from stl_search.modeling.losses import SoftmaxIDLoss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_CONFIGS = sorted(
    p
    for d in ("PRW", "CUHK-SYSU")
    for p in glob.glob(os.path.join(REPO, "configs", d, "*.yaml"))
    if not os.path.basename(p).startswith(("Base-", "fast_"))
    and not p.endswith("_anchors_stride8.yaml")
)
# Data set -> (training frames, lr-drop iteration, last iteration) at 16 images per batch.
SCHEDULES = {"PRW": (5704, 4278, 7130), "CUHK-SYSU": (11206, 8404, 14008)}
_ROW_LINE = re.compile(r'^# Table (\d+), row (\d+), "([^"]+)"')


def _load(path: str):
    cfg = add_stl_search_config(get_cfg())
    cfg.merge_from_file(path, allow_unsafe=False)
    return cfg


def _name(path: str) -> str:
    return os.path.relpath(path, REPO)


@pytest.fixture(scope="module")
def paper_model():
    """The full model of configs/PRW/stl_mrfp.yaml (random weights), built once."""
    cfg = _load(os.path.join(REPO, "configs", "PRW", "stl_mrfp.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 482  # PRW's, without reading the data set
    torch.manual_seed(0)
    return build_model(cfg)


def test_paper_configs_found():
    names = {_name(p) for p in PAPER_CONFIGS}
    assert "configs/PRW/stl_mrfp.yaml" in names and "configs/CUHK-SYSU/stl_mrfp.yaml" in names


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=_name)
def test_detector_settings(path):
    m = _load(path).MODEL
    assert list(m.ANCHOR_GENERATOR.SIZES) == [[4, 8, 16, 32]], (
        "paper 4.3: anchor sizes 4, 8, 16, 32"
    )
    assert list(m.ANCHOR_GENERATOR.ASPECT_RATIOS) == [[1.0, 2.0, 3.0]], (
        "paper 4.3: anchor aspect ratios 1, 2, 3"
    )
    assert list(m.RPN.CONV_DIMS) == [-1], "authors' code: RPN 3x3 conv as wide as res3 (512)"
    assert (m.RPN.PRE_NMS_TOPK_TRAIN, m.RPN.POST_NMS_TOPK_TRAIN) == (12000, 2000), (
        "authors' code: RPN top-k 12000 before / 2000 after NMS in training"
    )
    assert (m.RPN.PRE_NMS_TOPK_TEST, m.RPN.POST_NMS_TOPK_TEST) == (6000, 300), (
        "authors' code: RPN top-k 6000 before / 300 after NMS at test"
    )
    assert m.RPN.NMS_THRESH == 0.7, "authors' code: RPN NMS 0.7"
    assert list(m.RPN.IOU_THRESHOLDS) == [0.3, 0.7], "authors' code: RPN IoU 0.3 / 0.7"
    assert (m.RPN.BATCH_SIZE_PER_IMAGE, m.RPN.POSITIVE_FRACTION) == (256, 0.5), (
        "authors' code: 256 anchors per image, half positive"
    )
    assert (m.ROI_HEADS.BATCH_SIZE_PER_IMAGE, m.ROI_HEADS.POSITIVE_FRACTION) == (128, 0.25), (
        "authors' code: 128 RoIs per image, a quarter positive"
    )
    assert list(m.ROI_HEADS.IOU_THRESHOLDS) == [0.5], "authors' code: box-head IoU 0.5"
    assert m.ROI_HEADS.SCORE_THRESH_TEST == 0.5, "paper 4.3: detections scoring below 0.5 removed"
    assert m.ROI_HEADS.NMS_THRESH_TEST == 0.3, "authors' code: box NMS 0.3 at test"
    assert m.ID_HEAD.EMBEDDING_DIM == 2048 and m.RESNETS.DEPTH == 50, "paper: ResNet50-IBN-a"
    assert list(m.IBN.STAGES) == ["res2", "res3", "res4"], "IBN-a: IN in conv2_x..conv4_x"


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=_name)
def test_training_settings(path):
    cfg = _load(path)
    s = cfg.SOLVER
    assert s.IMS_PER_BATCH == 16, "paper 4.3: batch size 16"
    assert s.BASE_LR == 0.005, "paper 4.3: learning rate 0.005"
    assert s.BASE_LR * s.GAMMA == pytest.approx(0.0005), "paper 4.3: decayed to 0.0005"
    assert s.WEIGHT_DECAY == 1e-4, "paper 4.3: weight decay 1e-4"
    assert s.MOMENTUM == 0.9, "authors' code: SGD momentum 0.9"
    frames, step, last = SCHEDULES[os.path.basename(os.path.dirname(path))]
    assert tuple(s.STEPS) == (step,), f"paper 4.3: lr drop after epoch 12 ({step} iterations)"
    assert s.MAX_ITER == last, f"paper 4.3: 20 epochs ({last} iterations)"
    assert step * 16 / frames == pytest.approx(12, abs=1e-3)
    assert last * 16 / frames == pytest.approx(20, abs=1e-3)
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 0, "authors' code: nothing frozen"
    assert cfg.MODEL.RESNETS.NORM == "BN", "authors' code: trainable BatchNorm"
    assert cfg.MODEL.PERSON_SEARCH.ID_TRAIN_BOXES == "gt", "authors' code: ID loss on GT boxes"


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=_name)
def test_input_sizes_and_flip(path):
    cfg = _load(path)
    train = build_person_search_augmentations(cfg, True)
    resize = [a for a in train if isinstance(a, T.ResizeShortestEdge)]
    assert len(resize) == 1 and tuple(resize[0].short_edge_length) == (640,), (
        "paper 4.3: shorter side 640 in training"
    )
    assert resize[0].max_size == 960, "paper 4.3: longer side at most 960 in training"
    flips = [a for a in train if isinstance(a, T.RandomFlip)]
    assert len(flips) == 1 and flips[0].horizontal and flips[0].prob == 0.5, (
        "paper 4.3: random horizontal flip (probability 0.5), the only training augmentation"
    )
    assert len(train) == 2, "paper 4.3: only the horizontal flip besides the resize"
    (test,) = build_person_search_augmentations(cfg, False)
    assert (tuple(test.short_edge_length), test.max_size) == ((640, 640), 960), (
        "paper 4.3: shorter side 640, longer at most 960 at test"
    )


def test_built_anchors_are_the_papers(paper_model):
    (cell,) = paper_model.proposal_generator.anchor_generator.cell_anchors
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    sizes = sorted({round(v) for v in (w * h).sqrt().tolist()})
    ratios = sorted({round(v, 3) for v in (h / w).tolist()})
    assert sizes == [4, 8, 16, 32], "paper 4.3: anchor sizes 4, 8, 16, 32 (sqrt of area, px)"
    assert ratios == [1.0, 2.0, 3.0], "paper 4.3: aspect ratios (height / width) 1, 2, 3"
    assert paper_model.proposal_generator.anchor_generator.strides == [8], "RPN on res3 (stride 8)"


def test_built_rpn_and_box_head(paper_model):
    rpn = paper_model.proposal_generator
    assert rpn.rpn_head.conv.out_channels == 512, "authors' code: RPN 3x3 conv 512 wide"
    assert rpn.rpn_head.conv.kernel_size == (3, 3), "paper 3.3: RPN 3x3 conv"
    rh = paper_model.roi_heads
    (box_align,) = rh.box_pooler.level_poolers
    assert tuple(box_align.output_size) == (7, 7), "paper 3.3: RoI Align 7x7 for the box head"
    assert box_align.aligned and box_align.spatial_scale == 1 / 8, "RoI Align on res3 (stride 8)"
    fcs = [m for m in rh.box_head.modules() if isinstance(m, torch.nn.Linear)]
    assert [fc.out_features for fc in fcs] == [1024, 1024], "paper 3.3: two 1024-d FC layers"
    assert fcs[0].in_features == 512 * 7 * 7
    assert rh.box_predictor.test_topk_per_image == 100, "authors' code: <= 100 detections"


def test_built_identification_branch(paper_model):
    rh = paper_model.roi_heads
    high, low = rh.id_pooler.high, rh.id_pooler.low
    assert high.in_feature == "res3" and tuple(high.pooler.output_size) == (32, 16), (
        "paper 3.2: 32x16 RoIs on res3 (conv3_x, stride 8)"
    )
    assert high.pooler.spatial_scale == 1 / 8
    assert low.in_feature == "res2" and tuple(low.pooler.output_size) == (64, 32), (
        "paper 3.2: 64x32 RoIs on res2 (conv2_x, stride 4)"
    )
    assert low.pooler.spatial_scale == 1 / 4
    assert rh.id_head.res5[0].stride == 1, "paper 3.3: conv5_x stride 1"
    with torch.no_grad():
        emb = rh.id_head.eval()(torch.randn(1, 512, 32, 16))
    assert emb.shape == (1, 2048)


def test_built_model_trains_every_layer(paper_model):
    backbone = paper_model.backbone
    assert all(p.requires_grad for p in backbone.parameters()), "authors' code: nothing frozen"
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in paper_model.modules()), (
        "authors' code: trainable BatchNorm everywhere"
    )


@pytest.mark.parametrize("dataset,p", [("PRW", 16), ("CUHK-SYSU", 64)])
def test_stl_pretraining_settings(dataset, p):
    r = _load(os.path.join(REPO, "configs", "STL", f"{dataset}.yaml")).REID
    assert (r.SAMPLER.P, r.SAMPLER.K) == (p, 4), f"paper 4.3: P = {p}, K = 4"
    assert tuple(r.INPUT.SIZE) == (256, 128), "paper 3.1: 256x128 crops"
    assert r.INPUT.FLIP_PROB > 0 and r.INPUT.ERASE_PROB > 0, "paper 4.3: flip + random erasing"
    s = r.SOLVER
    assert s.OPTIMIZER == "ADAM" and s.BASE_LR == 3.5e-4, "paper 4.3: Adam, lr 3.5e-4"
    assert s.MAX_EPOCHS == 120 and tuple(s.STEPS_EPOCHS) == (40, 70), (
        "paper 4.3: 120 epochs, lr / 10 at epochs 40 and 70"
    )
    assert s.WARMUP_EPOCHS == 10 and s.BASE_LR * s.WARMUP_FACTOR == pytest.approx(3.5e-5), (
        "paper 4.3: linear warm-up from 3.5e-5 over 10 epochs"
    )
    assert s.WEIGHT_DECAY == 5e-4, "paper 4.3: Adam weight decay 5e-4"
    assert r.LOSS.TRIPLET and r.LOSS.CENTER and r.LOSS.CENTER_WEIGHT == 5e-4, (
        "paper Eq. 1: ID + triplet + lambda center loss, lambda 5e-4"
    )


def _table_rows():
    rows = {}
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*", "*.yaml"))):
        with open(path) as f:
            match = _ROW_LINE.match(f.readline())
        if match and "synthetic" not in path:
            table, row, name = int(match.group(1)), int(match.group(2)), match.group(3)
            rows.setdefault((table, os.path.basename(os.path.dirname(path)), row), []).append(
                (name, path)
            )
    return rows


def test_every_table_row_has_one_config():
    rows = _table_rows()
    assert all(len(v) == 1 for v in rows.values()), rows
    per_table = {}
    for table, folder, row in rows:
        per_table.setdefault((table, folder), []).append(row)
    assert sorted(per_table[(2, "PRW")]) == [1, 2, 3, 4, 5, 6], "paper Table 2: six rows"
    assert sorted(per_table[(2, "CUHK-SYSU")]) == [1, 2, 3, 4, 5, 6]
    assert sorted(per_table[(3, "PRW")]) == [1, 2], "paper Table 3: OIM* (ImageNet), OIM* (STL)"
    assert sorted(per_table[(4, "PRW")]) == [1, 2, 3], "paper Table 4: CE, CB CE, focal"
    assert sorted(per_table[(6, "STL")]) == [1, 2, 3], "paper Table 6: three pretraining settings"


@pytest.mark.parametrize(
    "table,row,loss,init",
    [(3, 1, "OIM", "imagenet"), (3, 2, "OIM", "stl"), (4, 1, "CE", "imagenet")]
    + [(4, 2, "CB_CE", "imagenet"), (4, 3, "FOCAL", "imagenet")],
)
def test_table_3_and_4_rows_differ_from_their_baseline_only_in_the_loss(table, row, loss, init):
    ((_, path),) = _table_rows()[(table, "PRW", row)]
    cfg, base = _load(path), _load(os.path.join(REPO, "configs", "PRW", f"{init}.yaml"))
    assert cfg.MODEL.PERSON_SEARCH.ID_LOSS == loss
    assert not cfg.MODEL.MRFP.ENABLED, "paper Tables 3-4: single-level baselines"
    for key in ("ID_LOSS", "CB_BETA", "FOCAL_GAMMA"):
        base.MODEL.PERSON_SEARCH[key] = cfg.MODEL.PERSON_SEARCH[key]
    assert cfg.dump() == base.dump()


@pytest.mark.parametrize(
    "row,triplet,center", [(1, False, False), (2, True, False), (3, True, True)]
)
def test_table_6_rows(row, triplet, center):
    ((_, path),) = _table_rows()[(6, "STL", row)]
    loss = _load(path).REID.LOSS
    assert (loss.TRIPLET, loss.CENTER) == (triplet, center)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_loss_closed_form(gamma):
    loss = SoftmaxIDLoss(3, 3, gamma=gamma)
    with torch.no_grad():
        loss.classifier.weight.copy_(torch.eye(3))  # logits = embeddings
    z = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 0.0]]
    y = [0, 0, -1]  # an easy and a hard example; the unlabeled one takes no loss
    expected = []
    for zi, yi in zip(z[:2], y[:2]):
        p = math.exp(zi[yi]) / sum(math.exp(v) for v in zi)
        expected.append(-((1 - p) ** gamma) * math.log(p))
    got = loss(torch.tensor(z), torch.tensor(y)).item()
    assert got == pytest.approx(sum(expected) / 2, rel=1e-6), "Lin et al.: -(1-p_t)^g log p_t"
