"""Fig. 6 tool: base-net feature maps of two initialisations, side by side, on a tiny model."""

import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from stl_search.tools import visualize_features as vf
from stl_search.utils.io import atomic_torch_save

from .tiny_configs import tiny_person_search_cfg


@pytest.fixture
def setup(tmp_path, one_seeded_thread):
    cfg = tiny_person_search_cfg()
    config = tmp_path / "tiny.yaml"
    config.write_text(cfg.dump())
    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = build_backbone(cfg, ShapeSpec(channels=3))
        state = {"backbone." + k: v for k, v in net.state_dict().items()}
        state["roi_heads.id_head.res4.0.conv1.weight"] = torch.zeros(1)  # other parts: ignored
        files.append(str(tmp_path / f"init{seed}.pth"))
        atomic_torch_save({"model": state}, files[-1])
    image = np.zeros((96, 160, 3), np.uint8)
    image[20:80, 40:64] = (30, 200, 90)  # a bright "person" on a dark frame
    image_path = str(tmp_path / "frame.png")
    cv2.imwrite(image_path, image)
    return cfg, str(config), files, image_path


def test_maps_have_the_stage_strides_and_differ_between_inits(setup):
    cfg, _, files, image_path = setup
    image = vf._network_input(cfg, image_path)
    assert image.shape[:2] == (96, 160)  # MIN_SIZE_TEST 96 / MAX_SIZE_TEST 160 of the tiny cfg
    maps = [
        vf.feature_maps(vf.load_base_nets(cfg, f, vf.BASE_NET_STAGES), cfg, image) for f in files
    ]
    assert {k: v.shape for k, v in maps[0].items()} == {
        "stem": (24, 40),
        "res2": (24, 40),
        "res3": (12, 20),
    }
    for m in maps[0].values():
        assert m.min() == 0.0 and m.max() == pytest.approx(1.0)
    assert not np.allclose(maps[0]["res3"], maps[1]["res3"])
    again = vf.feature_maps(vf.load_base_nets(cfg, files[0], ["res3"]), cfg, image)
    assert list(again) == ["res3"] and np.allclose(again["res3"], maps[0]["res3"])


def test_weights_without_base_nets_fail_by_name(setup, tmp_path):
    cfg, _, _, _ = setup
    path = str(tmp_path / "heads_only.pth")
    atomic_torch_save({"model": {"roi_heads.box_head.fc1.weight": torch.zeros(1)}}, path)
    with pytest.raises(KeyError, match="heads_only.pth: no base-net weights backbone.stem"):
        vf.load_base_nets(cfg, path, ["res3"])
    with pytest.raises(ValueError, match="res4"):
        vf.load_base_nets(cfg, vf.RANDOM, ["res4"])


def test_cli_writes_the_side_by_side_png(setup, tmp_path):
    _, config, files, image_path = setup
    out = str(tmp_path / "fig6.png")
    argv = ["--config-file", config, "--weights", vf.RANDOM, files[0], "--labels", "random"]
    vf.main(argv + ["STL", "--image", image_path, image_path, "--out", out])
    figure = cv2.imread(out)
    # 2 rows x (image + 3 stages x 2 inits) panels: wider than tall, several panels across.
    assert figure is not None and figure.shape[1] > 3 * figure.shape[0]
    with pytest.raises(ValueError, match="one distinct label"):
        vf.main(argv + ["--image", image_path, "--out", out])
    assert os.path.exists(out)
