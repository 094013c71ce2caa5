"""Identification poolers (MRFP and single-level) and identification nets."""

from __future__ import annotations

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes
from torchvision.ops import roi_align

from stl_search.modeling.id_net import BNNeck, IdentificationNet
from stl_search.modeling.mrfp import (
    MultiLevelRoIFusionPooler,
    SingleLevelRoIPooler,
    build_id_pooler,
)

SHAPES = {"res2": ShapeSpec(channels=32, stride=4), "res3": ShapeSpec(channels=64, stride=8)}


def _features(h: int = 96, w: int = 64):
    return {"res2": torch.randn(2, 32, h // 4, w // 4), "res3": torch.randn(2, 64, h // 8, w // 8)}


def _boxes():
    return [
        Boxes(torch.tensor([[4.0, 8.0, 20.0, 60.0], [30.0, 10.0, 50.0, 90.0]])),
        Boxes(torch.tensor([[0.0, 0.0, 63.0, 95.0]])),
    ]


def _rois(boxes):
    return torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i)), b.tensor], 1) for i, b in enumerate(boxes)]
    )


def test_mrfp_equals_neck_of_low_plus_high(cfg):
    pooler = build_id_pooler(cfg, SHAPES).eval()
    assert isinstance(pooler, MultiLevelRoIFusionPooler)
    feats, boxes = _features(), _boxes()
    out = pooler(feats, boxes)
    assert out.shape == (3, 64, 8, 4)
    rois = _rois(boxes)
    low = roi_align(
        feats["res2"], rois, (16, 8), spatial_scale=0.25, sampling_ratio=2, aligned=True
    )
    high = roi_align(
        feats["res3"], rois, (8, 4), spatial_scale=0.125, sampling_ratio=2, aligned=True
    )
    with torch.no_grad():
        expected = pooler.neck(low) + high
    assert torch.allclose(out, expected, atol=1e-5)
    assert pooler.output_shape == ShapeSpec(channels=64, height=8, width=4, stride=8)


def test_mrfp_neck_is_a_res3_copy_with_own_params_and_no_res3_name(cfg):
    pooler = build_id_pooler(cfg, SHAPES)
    assert len(pooler.neck) == 4  # ResNet-50 res3 has 4 blocks
    assert pooler.neck[0].conv2.stride == (2, 2)
    names = [k for k, _ in pooler.state_dict().items()]
    assert names and all(k.startswith("neck.") for k in names)
    assert not any("res3" in k for k in names)


def test_single_level_baseline(cfg):
    cfg.MODEL.MRFP.ENABLED = False
    pooler = build_id_pooler(cfg, SHAPES)
    assert isinstance(pooler, SingleLevelRoIPooler)
    assert len(pooler.state_dict()) == 0
    feats, boxes = _features(), _boxes()
    out = pooler(feats, boxes)
    expected = roi_align(
        feats["res3"], _rois(boxes), (8, 4), spatial_scale=0.125, sampling_ratio=2, aligned=True
    )
    assert torch.allclose(out, expected, atol=1e-6)


def test_poolers_handle_no_boxes(cfg):
    pooler = build_id_pooler(cfg, SHAPES).eval()
    empty = [Boxes(torch.zeros(0, 4)), Boxes(torch.zeros(0, 4))]
    assert pooler(_features(), empty).shape == (0, 64, 8, 4)


def test_mrfp_rejects_mismatched_resolutions(cfg):
    cfg.MODEL.MRFP.LOW_RESOLUTION = (16, 16)
    with pytest.raises(ValueError):
        build_id_pooler(cfg, SHAPES)


def test_identification_net_shapes_and_bnneck(cfg):
    net = IdentificationNet(cfg, ShapeSpec(channels=64, height=8, width=4))
    assert isinstance(net.bnneck, BNNeck) and not net.bnneck.bias.requires_grad
    assert net.res5[0].conv2.stride == (1, 1)  # MODEL.IBN.RES5_STRIDE = 1
    x = torch.randn(3, 64, 8, 4)
    assert net(x).shape == (3, 256)
    assert net(x[:1]).shape == (1, 256)  # one RoI in training: running statistics, no error
    net.eval()
    assert net(x[:0]).shape == (0, 256)
    keys = set(net.state_dict())
    assert {"bnneck.weight", "bnneck.bias", "bnneck.running_mean"} <= keys
    assert {k.split(".")[0] for k in keys} == {"res4", "res5", "bnneck"}


def test_identification_net_checks_embedding_dim(cfg):
    cfg.MODEL.ID_HEAD.EMBEDDING_DIM = 2048
    with pytest.raises(ValueError):
        IdentificationNet(cfg, ShapeSpec(channels=64, height=8, width=4))
