"""ResNet-18/34: the widths follow the depth (basic blocks: res2 as wide as the stem, 512-d res5),
an inconsistent width fails at build time, and ImageNet ResNet-18/34 weights fit every tensor."""

from __future__ import annotations

import os

import pytest
import torchvision
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from stl_search.config import add_stl_search_config
from stl_search.modeling.backbone.resnet_ibn import imagenet_widths
from stl_search.tools.convert_imagenet import (
    convert_for,
    convert_imagenet_resnet,
    resnet_config_of,
)
from stl_search.utils.checkpoint import AtomicCheckpointer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TORCHVISION = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34}


def _paper_cfg(depth: int, ibn_stages=("res2", "res3", "res4")):
    cfg = add_stl_search_config(get_cfg())
    cfg.merge_from_file(os.path.join(REPO, "configs", "Base-PersonSearch.yaml"), allow_unsafe=False)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.IBN.STAGES = list(ibn_stages)
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 5
    return cfg


def _with_widths(cfg):
    for key, value in imagenet_widths(cfg.MODEL.RESNETS.DEPTH).items():
        cfg.merge_from_list([key, value])
    return cfg


def _resnet_params(model) -> int:
    """Parameters of stem..res5: the base nets (stem..res3) plus the identification nets' res4 and
    res5 (the model's two copies of one ResNet, without the MRFP neck, BNNeck and heads)."""
    parts = [model.backbone, model.roi_heads.id_head.res4, model.roi_heads.id_head.res5]
    return sum(p.numel() for part in parts for p in part.parameters())


@pytest.mark.parametrize("depth", [18, 34])
def test_depth_alone_fails_naming_the_widths(depth):
    cfg = _paper_cfg(depth)  # RES2_OUT_CHANNELS stays at the bottleneck width 256
    with pytest.raises(ValueError, match="RES2_OUT_CHANNELS 64 MODEL.ID_HEAD.EMBEDDING_DIM 512"):
        build_model(cfg)


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("ibn_stages", [(), ("res2", "res3", "res4")])
def test_imagenet_widths_match_torchvision_parameter_counts(depth, ibn_stages):
    model = build_model(_with_widths(_paper_cfg(depth, ibn_stages)))
    tv = TORCHVISION[depth](weights=None)
    fc = sum(p.numel() for p in tv.fc.parameters())
    # IBN-a splits a norm's channels between IN and BN (both affine): the count is unchanged.
    assert _resnet_params(model) == sum(p.numel() for p in tv.parameters()) - fc
    assert model.roi_heads.id_head.embedding_dim == 512
    assert model.backbone.output_shape()["res3"].channels == 128


def test_embedding_dim_must_match_res5():
    cfg = _with_widths(_paper_cfg(18))
    cfg.MODEL.ID_HEAD.EMBEDDING_DIM = 2048
    with pytest.raises(ValueError, match="set MODEL.ID_HEAD.EMBEDDING_DIM 512"):
        build_model(cfg)


@pytest.mark.parametrize("depth", [18, 34])
def test_torchvision_weights_load_into_every_tensor(depth):
    tv = TORCHVISION[depth](weights=None).state_dict()
    keys = resnet_config_of(convert_imagenet_resnet(tv))
    assert keys["MODEL.RESNETS.DEPTH"] == depth and keys["MODEL.IBN.STAGES"] == []
    cfg = _paper_cfg(depth, ibn_stages=())
    cfg.merge_from_list([x for k, v in keys.items() if k != "MODEL.IBN.STAGES" for x in (k, v)])
    model = build_model(cfg)
    incompatible = AtomicCheckpointer(model)._load_model(
        {"model": convert_for(tv, "person_search"), "matching_heuristics": False}
    )
    assert not incompatible.incorrect_shapes and not incompatible.unexpected_keys
    loaded = model.roi_heads.id_head.res5[1].conv2.weight
    assert loaded.shape == (512, 512, 3, 3) and loaded.eq(tv["layer4.1.conv2.weight"]).all()


def test_resnet_config_of_bottleneck_ibn():
    tv = torchvision.models.resnet50(weights=None).state_dict()
    keys = resnet_config_of(convert_imagenet_resnet(tv))
    assert keys["MODEL.RESNETS.DEPTH"] == 50
    assert keys["MODEL.RESNETS.RES2_OUT_CHANNELS"] == 256
    assert keys["MODEL.ID_HEAD.EMBEDDING_DIM"] == 2048
