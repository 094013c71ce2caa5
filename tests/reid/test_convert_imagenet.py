"""ImageNet weight converter: torchvision ResNet and the IBN-Net resnet50_ibn_a release format."""

import pytest
import torch
import torchvision
from detectron2.modeling import build_model

from stl_search.reid.model import ReIDNet
from stl_search.reid.stl_init import PERSON_SEARCH_UNINITIALISED
from stl_search.tools.convert_imagenet import (
    convert_for,
    convert_imagenet_resnet,
)
from stl_search.tools.convert_imagenet import (
    main as convert_main,
)
from stl_search.utils.checkpoint import AtomicCheckpointer

from ..tiny_configs import tiny_person_search_cfg
from .helpers import tiny_reid_cfg


def _full_width(cfg, ibn_stages):
    r = cfg.MODEL.RESNETS
    r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS, r.WIDTH_PER_GROUP = 64, 256, 64
    cfg.MODEL.IBN.STAGES = ibn_stages
    return cfg


def _ibn_a_release(tv):
    """torchvision ResNet-50 weights re-cut as IBN-Net's resnet50_ibn_a file (IN on half of bn1 in
    layer1-3), wrapped as {"state_dict": {"module." + key}} like the original release."""
    out = {}
    for k, v in tv.items():
        parts = k.split(".")
        if parts[0] in ("layer1", "layer2", "layer3") and parts[2] == "bn1":
            half = v.shape[0] // 2 if v.dim() else None
            stem = ".".join(parts[:3])
            if parts[3] in ("weight", "bias"):
                out[f"{stem}.IN.{parts[3]}"] = v[:half].clone()
            if parts[3] == "num_batches_tracked":
                out[f"{stem}.BN.{parts[3]}"] = v
            else:
                out[f"{stem}.BN.{parts[3]}"] = v[half:].clone()
        else:
            out[k] = v
    return {"state_dict": {"module." + k: v for k, v in out.items()}}


def _load(model, sd):
    ckpt = AtomicCheckpointer(model)
    return ckpt._load_model({"model": dict(sd), "matching_heuristics": False})


def test_torchvision_resnet50_maps_without_leftovers_onto_the_reid_net():
    tv = torchvision.models.resnet50(weights=None).state_dict()
    converted = convert_for(tv, "reid")
    assert not any(k.startswith("backbone.fc") for k in converted)
    net = ReIDNet(_full_width(tiny_reid_cfg(), []), num_classes=3)
    inc = _load(net, converted)
    assert inc.unexpected_keys == [] and inc.incorrect_shapes == []
    assert set(inc.missing_keys) == {
        k
        for k in net.state_dict()
        if k.startswith(("bnneck.", "classifier.", "center_loss."))
        and not k.endswith("num_batches_tracked")
    }
    torch.testing.assert_close(
        net.state_dict()["backbone.res4.5.conv2.weight"], tv["layer3.5.conv2.weight"]
    )
    torch.testing.assert_close(
        net.state_dict()["backbone.res2.0.shortcut.norm.running_var"],
        tv["layer1.0.downsample.1.running_var"],
    )


def test_ibn_a_release_format_maps_onto_ibn_stages(tmp_path):
    tv = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(_ibn_a_release(tv), tmp_path / "resnet50_ibn_a.pth")
    assert (
        convert_main(
            [str(tmp_path / "resnet50_ibn_a.pth"), str(tmp_path / "reid.pth"), "--for", "reid"]
        )
        == 0
    )
    net = ReIDNet(_full_width(tiny_reid_cfg(), ["res2", "res3", "res4"]), num_classes=3)
    inc = _load(net, torch.load(tmp_path / "reid.pth", weights_only=True)["model"])
    assert inc.unexpected_keys == [] and inc.incorrect_shapes == []
    assert all(k.startswith(("bnneck.", "classifier.", "center_loss.")) for k in inc.missing_keys)
    sd = net.state_dict()
    torch.testing.assert_close(
        sd["backbone.res3.2.conv1.norm.IN.weight"], tv["layer2.2.bn1.weight"][:64]
    )
    torch.testing.assert_close(
        sd["backbone.res3.2.conv1.norm.BN.running_mean"], tv["layer2.2.bn1.running_mean"][64:]
    )


def test_person_search_layout_leaves_detector_classifier_and_embedding_bn(tmp_path):
    tv = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(tv, tmp_path / "r50.pth")
    assert convert_main([str(tmp_path / "r50.pth"), str(tmp_path / "ps.pth")]) == 0
    cfg = _full_width(tiny_person_search_cfg(), [])
    cfg.MODEL.ID_HEAD.EMBEDDING_DIM = 2048
    model = build_model(cfg)
    ckpt = AtomicCheckpointer(model)
    inc = ckpt._load_model(ckpt._load_file(str(tmp_path / "ps.pth")))
    expected = {
        k
        for k in model.state_dict()
        if k.startswith(tuple(PERSON_SEARCH_UNINITIALISED) + ("roi_heads.id_head.bnneck.",))
        and not k.endswith("num_batches_tracked")
    }  # BatchNorm restores its counter itself
    assert set(inc.missing_keys) == expected
    assert inc.unexpected_keys == [] and inc.incorrect_shapes == []
    torch.testing.assert_close(
        model.state_dict()["roi_heads.id_pooler.neck.3.conv3.weight"], tv["layer2.3.conv3.weight"]
    )


def test_unknown_keys_are_an_error():
    tv = torchvision.models.resnet18(weights=None).state_dict()
    assert "res5.1.conv2.weight" in convert_imagenet_resnet(tv)
    with pytest.raises(KeyError, match="not ResNet weights"):
        convert_imagenet_resnet({**tv, "layer1.0.se.fc1.weight": torch.zeros(1)})
