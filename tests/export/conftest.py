"""Tiny person-search models exported once per session to both formats (a few seconds each);
a tiny checkpoint exported by the command, with a gallery of scenes, for the deployment paths."""

from __future__ import annotations

import os
from types import SimpleNamespace

import cv2
import pytest
import torch
from detectron2.modeling import build_model

from stl_search.engine.setup import load_config
from stl_search.export import FORMATS, export_person_search
from stl_search.export.__main__ import main as export_main
from stl_search.utils.checkpoint import AtomicCheckpointer

from ..modeling.helpers import synthetic_input
from .helpers import tiny_export_cfg


@pytest.fixture(autouse=True)
def _one_thread(one_seeded_thread):
    """Every test here runs on one seeded thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``(mrfp, fmt) -> (cfg, model, export_dir)``, built and exported on first use."""
    cache = {}

    def get(mrfp: bool, fmt: str):
        if (mrfp, fmt) not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            torch.manual_seed(0)
            cfg = tiny_export_cfg(mrfp)
            model = build_model(cfg).eval()
            out = str(tmp_path_factory.mktemp(f"{'mrfp' if mrfp else 'baseline'}_{fmt}"))
            export_person_search(model, cfg, out, fmt)
            torch.set_num_threads(threads)
            cache[(mrfp, fmt)] = (cfg, model, out)
        return cache[(mrfp, fmt)]

    return get


def shipped_fast_path_cfg(repo_root: str):
    """The tiny MRFP model under the inference fast path of ``configs/Base-PersonSearch.yaml``
    (folded BN, channels-last: what every shipped config runs), detections kept at any score."""
    base = load_config(os.path.join(repo_root, "configs", "Base-PersonSearch.yaml"))
    assert base.TEST.FAST_PATH.FOLD_BN and base.TEST.FAST_PATH.CHANNELS_LAST
    cfg = tiny_export_cfg(mrfp=True)
    cfg.TEST.FAST_PATH = base.TEST.FAST_PATH.clone()
    cfg.TEST.PERSON_SEARCH.SCORE_THRESH = 0.0
    return cfg


def write_image(path: str, h: int, w: int, seed: int) -> list:
    """A synthetic scene of ``h x w`` as a PNG; returns its first person's box (XYXY)."""
    x = synthetic_input(h, w, seed=seed)
    cv2.imwrite(path, x["image"].permute(1, 2, 0).numpy())
    return x["instances"].gt_boxes.tensor[0].tolist()


@pytest.fixture(scope="session")
def deployed(tmp_path_factory, repo_root):
    """A tiny checkpoint, its config (Base-PersonSearch's fast path) and its ONNX and
    TorchScript exports made by ``python -m stl_search.export``, plus a gallery folder of three
    scenes of other sizes than the export's example image."""
    folder = tmp_path_factory.mktemp("deployed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = shipped_fast_path_cfg(repo_root)
    AtomicCheckpointer(build_model(cfg), save_dir=str(folder)).save("model")
    cfg.MODEL.WEIGHTS = str(folder / "model.pth")
    config = folder / "config.yaml"
    config.write_text(cfg.dump())
    exports = {}
    for fmt in FORMATS:
        exports[fmt] = str(folder / fmt)
        export_main(["--config-file", str(config), "--format", fmt, "--out", exports[fmt]])
    gallery = folder / "gallery"
    gallery.mkdir()
    boxes = [
        write_image(str(gallery / f"scene{i}.png"), h, w, seed=10 + i)
        for i, (h, w) in enumerate([(300, 220), (150, 400), (200, 260)])
    ]
    torch.set_num_threads(threads)
    return SimpleNamespace(
        cfg=cfg,
        config=str(config),
        weights=cfg.MODEL.WEIGHTS,
        exports=exports,
        gallery=str(gallery),
        query=str(gallery / "scene0.png"),
        box=boxes[0],
    )
