"""ResNet-IBN-a: IBN placement and channel split, stage building, config handling."""

from __future__ import annotations

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from torch import nn

from stl_search.modeling.backbone.resnet_ibn import (
    IBN,
    build_resnet_ibn_backbone,
    make_resnet_ibn_stages,
)

from ..tiny_configs import tiny_person_search_cfg


def test_ibn_applies_instance_norm_to_exactly_half_the_channels():
    ibn = IBN(8, 0.5, "BN").eval()
    assert isinstance(ibn.IN, nn.InstanceNorm2d) and ibn.IN.num_features == 4
    assert isinstance(ibn.BN, nn.BatchNorm2d) and ibn.BN.num_features == 4
    # Per-channel offsets and scales: IN removes them per image, eval-mode BN (identity stats)
    # keeps them.
    x = torch.randn(2, 8, 5, 6) * 3 + torch.arange(8.0)[None, :, None, None] * 10
    y = ibn(x)
    mean = y.mean(dim=(2, 3))
    assert torch.allclose(mean[:, :4], torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(y[:, 4:], x[:, 4:] / (1 + 1e-5) ** 0.5, atol=1e-4)
    assert not torch.allclose(mean[:, 4:], torch.zeros(2, 4), atol=1.0)


def test_ibn_placement_and_names(cfg):
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    for name in ("res2", "res3", "res4", "res5"):
        stage = getattr(net, name)
        for block in stage:
            want_ibn = name != "res5"
            assert isinstance(block.conv1.norm, IBN) == want_ibn, (name, block)
            assert not isinstance(block.conv2.norm, IBN) and not isinstance(block.conv3.norm, IBN)
            if want_ibn:
                assert block.conv1.norm.IN.num_features * 2 == block.conv1.out_channels
    keys = net.state_dict().keys()
    assert "res2.0.conv1.norm.IN.weight" in keys and "res4.5.conv1.norm.BN.running_var" in keys
    assert {k.split(".")[0] for k in keys} == {"stem", "res2", "res3", "res4", "res5"}
    # res5 first stride MODEL.IBN.RES5_STRIDE = 1: overall stride 16.
    assert net.output_shape()["res5"].stride == 16
    out = net.eval()(torch.randn(1, 3, 64, 32))
    assert out["res5"].shape == (1, 256, 4, 2)


def test_backbone_outputs_and_stops_after_last_feature(cfg):
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    assert not hasattr(net, "res4")
    shapes = net.output_shape()
    assert (shapes["res2"].channels, shapes["res2"].stride) == (32, 4)
    assert (shapes["res3"].channels, shapes["res3"].stride) == (64, 8)
    out = net.eval()(torch.randn(1, 3, 64, 48))
    assert out["res2"].shape == (1, 32, 16, 12) and out["res3"].shape == (1, 64, 8, 6)


def test_stride_in_3x3_by_default(cfg):
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    assert net.res3[0].conv1.stride == (1, 1) and net.res3[0].conv2.stride == (2, 2)
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = True
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    assert net.res3[0].conv1.stride == (2, 2) and net.res3[0].conv2.stride == (1, 1)


def test_frozen_bn_and_freeze_at(cfg):
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(net.res3[0].conv1.norm.BN, FrozenBatchNorm2d)
    assert all(not p.requires_grad for p in net.stem.parameters())
    assert all(not p.requires_grad for p in net.res2.parameters())
    assert all(p.requires_grad for p in net.res3.parameters())


def test_freeze_converts_bn_inside_ibn(cfg):
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(net.res2[0].conv1.norm.BN, FrozenBatchNorm2d)
    assert isinstance(net.res3[0].conv1.norm.BN, nn.BatchNorm2d)


@pytest.mark.parametrize("depth", [18, 34, 101])
def test_other_depths(depth):
    cfg = tiny_person_search_cfg(depth)
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3"]
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    n_res3 = {18: 2, 34: 4, 101: 4}[depth]
    assert len(net.res3) == n_res3
    assert isinstance(net.res3[0].conv1.norm, IBN)
    out = net.eval()(torch.randn(1, 3, 32, 32))["res3"]
    assert out.shape[1] == (16 if depth < 50 else 64)


def test_make_stages_for_id_nets_and_neck(cfg):
    stages = make_resnet_ibn_stages(cfg, ["res4", "res5"])
    assert list(stages) == ["res4", "res5"]
    x = torch.randn(2, 64, 8, 4)
    y = stages["res5"](stages["res4"](x))
    assert y.shape == (2, 256, 4, 2)  # res4 stride 2, res5 stride 1
    neck = make_resnet_ibn_stages(cfg, ["res3"])["res3"]
    assert neck(torch.randn(2, 32, 16, 8)).shape == (2, 64, 8, 4)
    with pytest.raises(ValueError):
        make_resnet_ibn_stages(cfg, ["res3", "res5"])


def test_plain_resnet_when_no_ibn_stages(cfg):
    cfg.MODEL.IBN.STAGES = []
    net = build_resnet_ibn_backbone(cfg, ShapeSpec(channels=3))
    assert not any(isinstance(m, IBN) for m in net.modules())
