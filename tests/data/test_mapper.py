"""PersonSearchDatasetMapper (resize rule, flip, ids, query box) and the loaders around it."""

from __future__ import annotations

import copy
import os
import shutil

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.structures import Boxes

from stl_search.config import add_stl_search_config
from stl_search.data import register_prw
from stl_search.data.build import (
    build_person_search_eval_loader,
    build_person_search_test_loader,
    build_person_search_train_loader,
)
from stl_search.data.datasets.prw import load_prw_queries, load_prw_scenes
from stl_search.data.mapper import PersonSearchDatasetMapper
from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.utils.images import ImageReadError, read_image

from . import fixtures as fx


def _cfg(min_size=64, max_size=100, flip=0.0):
    cfg = add_stl_search_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (min_size,), max_size
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = min_size, max_size
    cfg.INPUT.HFLIP_PROB = flip
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def _train_dict(prw_root):
    return next(
        d for d in load_prw_scenes(prw_root, "train") if d["image_id"] == "c1s1_000151.jpg"
    )  # 100 x 120


def test_paper_resize_rule_default_config():
    cfg = add_stl_search_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (640,), 960
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 640, 960
    tfm = PersonSearchDatasetMapper(cfg, mode="test").augmentations
    for (h, w), expected in [
        ((1080, 1920), (540, 960)),
        ((480, 640), (640, 853)),
        ((600, 400), (960, 640)),
    ]:
        aug_input = T.AugInput(np.zeros((h, w, 3), np.uint8))
        tfm(aug_input)
        assert aug_input.image.shape[:2] == expected, (h, w)


def test_train_mode_resize_ids_and_classes(prw_root):
    d = _train_dict(prw_root)
    out = PersonSearchDatasetMapper(_cfg(), mode="train")(d)
    # 100 x 120: shorter side 100 -> 64 (scale 0.64), longer 76.8 <= 100.
    assert out["image"].dtype == torch.uint8 and tuple(out["image"].shape) == (3, 64, 77)
    assert (out["height"], out["width"], out["image_id"]) == (100, 120, "c1s1_000151.jpg")
    inst = out["instances"]
    s = torch.tensor([77 / 120, 64 / 100] * 2)
    expected = torch.tensor([a["bbox"] for a in d["annotations"]]) * s
    assert torch.allclose(inst.gt_boxes.tensor, expected, atol=1e-3)
    assert inst.gt_person_ids.dtype == torch.int64 and inst.gt_person_ids.tolist() == [0, -1, 1]
    assert inst.gt_classes.tolist() == [0, 0, 0]
    assert "annotations" not in out and "annotations" in d  # the input dict is not modified


def test_max_size_caps_the_longer_side(prw_root):
    d = _train_dict(prw_root)
    out = PersonSearchDatasetMapper(_cfg(min_size=90, max_size=96), mode="test")(d)
    assert tuple(out["image"].shape[1:]) == (80, 96)  # 100x120 * 0.8: longer side capped at 96
    assert (
        out["annotations"] == d["annotations"]
    )  # gallery dicts keep the original-frame annotations


def test_flip_flips_boxes(prw_root):
    d = _train_dict(prw_root)
    plain = PersonSearchDatasetMapper(_cfg(flip=0.0), mode="train")(d)["instances"].gt_boxes.tensor
    flipped_out = PersonSearchDatasetMapper(_cfg(flip=1.0), mode="train")(d)
    flipped = flipped_out["instances"].gt_boxes.tensor
    width = flipped_out["image"].shape[2]
    assert torch.allclose(flipped[:, 0], width - plain[:, 2], atol=1e-3)
    assert torch.allclose(flipped[:, 2], width - plain[:, 0], atol=1e-3)
    assert torch.allclose(flipped[:, 1::2], plain[:, 1::2])
    img_plain = PersonSearchDatasetMapper(_cfg(flip=0.0), mode="train")(d)["image"]
    assert torch.equal(flipped_out["image"], img_plain.flip(-1))


def test_query_box_in_resized_frame(prw_root):
    q = load_prw_queries(prw_root)[1]  # c3s2_000400: 80 x 110, box [50, 0, 80, 60]
    out = PersonSearchDatasetMapper(_cfg(), mode="query")(copy.deepcopy(q))
    h, w = out["image"].shape[1:]
    assert (h, w) == (64, 88)  # scale 0.8
    assert isinstance(out["query_boxes"], Boxes) and tuple(out["query_boxes"].tensor.shape) == (
        1,
        4,
    )
    assert torch.allclose(out["query_boxes"].tensor, torch.tensor([[40.0, 0.0, 64.0, 48.0]]))
    assert (out["identity"], out["query_index"], out["height"], out["width"]) == (8, 1, 80, 110)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        PersonSearchDatasetMapper(_cfg(), mode="val")


def test_loaders_on_registered_fixture(prw_root, unique_prefix):
    train, gallery, query = register_prw(unique_prefix, prw_root)
    cfg = _cfg(flip=0.5)
    cfg.DATASETS.TRAIN = (train,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    batch = next(iter(build_person_search_train_loader(cfg)))
    assert len(batch) == 2 and all(b["instances"].has("gt_person_ids") for b in batch)
    gal = list(build_person_search_test_loader(cfg, gallery, "test"))
    assert [b[0]["image_id"] for b in gal] == [d["image_id"] for d in DatasetCatalog.get(gallery)]
    qs = list(build_person_search_test_loader(cfg, query, "query"))
    assert [b[0]["query_index"] for b in qs] == [0, 1] and all("query_boxes" in b[0] for b in qs)
    # One loader for both passes of person search (DefaultTrainer.build_test_loader), the query
    # split taken from the gallery's metadata.
    both = build_person_search_eval_loader(cfg, gallery)
    batches = list(both)
    assert len(both) == len(batches) == len(gal) + len(qs)
    assert [b[0]["image_id"] for b in batches] == [b[0]["image_id"] for b in gal + qs]
    assert ["query_boxes" in b[0] for b in batches] == [False] * len(gal) + [True] * len(qs)
    with pytest.raises(KeyError, match=f"no query split for '{train}'"):
        build_person_search_eval_loader(cfg, train)


@pytest.mark.parametrize("mode", ["train", "test", "query"])
def test_truncated_image_error_names_the_file(tmp_path, prw_root, mode):
    # The loader reads only the header, so the data set dict is built; decoding then fails.
    root = str(shutil.copytree(prw_root, tmp_path / "prw"))
    frame = os.path.join(root, "frames", "c1s2_000300.jpg")
    fx.write_truncated_copy(os.path.join(prw_root, "frames", "c1s2_000300.jpg"), frame)
    d = load_prw_queries(root)[0] if mode == "query" else load_prw_scenes(root, "gallery")[0]
    assert d["file_name"] == frame
    mapper = PersonSearchDatasetMapper(_cfg(), mode=mode)
    with pytest.raises(ImageReadError, match=rf"^{frame}: cannot decode the image \(.*truncated"):
        mapper(d)


def test_huge_image_error_names_the_file(tmp_path, prw_root):
    d = dict(_train_dict(prw_root), file_name=str(tmp_path / "huge.png"))
    fx.write_png_header_only(d["file_name"], 16384, 16384)  # 256 MP
    with pytest.raises(ImageReadError, match=r"huge.png: image too large to decode safely"):
        PersonSearchDatasetMapper(_cfg(), mode="train")(d)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        PersonSearchDatasetMapper(_cfg(), mode="train")(dict(d, file_name="missing.jpg"))


def test_one_reader_names_huge_and_truncated_images(tmp_path, prw_root):
    # The predictor (search, index) reads images with the mapper's reader, before the mapper;
    # callers catching ValueError (bad input) or OSError (unreadable file) both see the error.
    huge = str(tmp_path / "huge.png")
    fx.write_png_header_only(huge, 16384, 16384)  # 256 MP
    with pytest.raises(ValueError, match=r"huge.png: image too large to decode safely"):
        read_image(huge, "BGR")
    cut = str(tmp_path / "cut.jpg")
    fx.write_truncated_copy(os.path.join(prw_root, "frames", "c1s2_000300.jpg"), cut)
    with pytest.raises(OSError, match=r"cut.jpg: cannot decode the image \(.*truncated"):
        PersonSearchPredictor(_cfg(), model=torch.nn.Identity()).as_record(cut)
