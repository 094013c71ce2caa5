"""SeparableRoIAlign reproduces torchvision's aligned RoI Align (values and feature gradients)."""

from __future__ import annotations

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torchvision.ops import roi_align

from stl_search.modeling.mrfp import build_id_pooler
from stl_search.modeling.separable_roi_align import SeparableRoIAlign


def _boxes():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(12, 2, generator=g) * 110 - 10
    wh = torch.rand(12, 2, generator=g) * 70
    edge = torch.tensor(
        [[-20.0, -10.0, 40.0, 90.0],  # crosses the top-left border
         [0.0, 0.0, 119.0, 99.0],  # the whole map
         [100.0, 80.0, 130.0, 120.0],  # crosses the bottom-right border
         [3.3, 4.7, 3.9, 5.1],  # smaller than a feature cell
         [200.0, 200.0, 260.0, 300.0],  # outside the map
         [-50.0, -50.0, -10.0, -10.0]]  # outside, before the origin
    )  # fmt: skip
    return [Boxes(edge), Boxes(torch.cat([xy, xy + wh], 1))]


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("out", [(8, 4), (7, 7), (16, 8)])
def test_matches_torchvision_values_and_gradients(sampling_ratio, out):
    boxes = _boxes()
    feat = torch.randn(2, 6, 25, 30)
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i)), b.tensor], 1) for i, b in enumerate(boxes)]
    )
    fa, fb = feat.clone().requires_grad_(), feat.clone().requires_grad_()
    y = SeparableRoIAlign(out, 0.25, sampling_ratio)([fa], boxes)
    ref = roi_align(fb, rois, out, 0.25, sampling_ratio, aligned=True)
    assert y.shape == ref.shape == (18, 6) + out
    assert torch.allclose(y, ref, atol=1e-5)
    g = torch.randn_like(ref)
    (y * g).sum().backward()
    (ref * g).sum().backward()
    assert torch.allclose(fa.grad, fb.grad, atol=1e-4)


def test_adaptive_sampling_and_empty_inputs_fall_back():
    boxes = _boxes()
    feat = torch.randn(2, 3, 25, 30)
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i)), b.tensor], 1) for i, b in enumerate(boxes)]
    )
    y = SeparableRoIAlign((4, 2), 0.25, 0)([feat], boxes)
    assert torch.allclose(y, roi_align(feat, rois, (4, 2), 0.25, 0, aligned=True))
    empty = [Boxes(torch.zeros(0, 4)), Boxes(torch.zeros(0, 4))]
    assert SeparableRoIAlign((4, 2), 0.25, 2)([feat], empty).shape == (0, 3, 4, 2)


def test_id_poolers_use_it_for_aligned_roi_align_only(cfg):
    shapes = {"res2": ShapeSpec(channels=32, stride=4), "res3": ShapeSpec(channels=64, stride=8)}
    pooler = build_id_pooler(cfg, shapes)
    assert isinstance(pooler.low.pooler, SeparableRoIAlign)
    assert isinstance(pooler.high.pooler, SeparableRoIAlign)
    cfg.MODEL.ID_HEAD.POOLER_TYPE = "ROIAlign"
    cfg.MODEL.MRFP.ENABLED = False
    assert isinstance(build_id_pooler(cfg, shapes).pooler, ROIPooler)
