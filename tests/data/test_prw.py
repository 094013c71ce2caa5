"""PRW loader on a fixture written in the distributed format: every box, identity, camera, split."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from detectron2.structures import BoxMode
from scipy.io import loadmat, savemat

from stl_search.data.datasets.common import DatasetFormatError, DatasetKeyError
from stl_search.data.datasets.prw import (
    load_prw_queries,
    load_prw_scenes,
    prw_camera_id,
    read_prw_id_list,
)

from . import fixtures as fx


def _check_scenes(dicts, expected, root):
    assert [d["image_id"] for d in dicts] == list(expected)
    for d in dicts:
        cam, annos = expected[d["image_id"]]
        h, w = fx.PRW_SIZES[d["image_id"][:-4]]
        assert d["file_name"] == os.path.join(os.path.abspath(root), "frames", d["image_id"])
        assert (d["height"], d["width"], d["camera_id"]) == (h, w, cam)
        got = [(a["bbox"], a["person_id"], a["identity"]) for a in d["annotations"]]
        assert got == [(list(map(float, b)), p, i) for b, p, i in annos], d["image_id"]
        assert all(
            a["bbox_mode"] == BoxMode.XYXY_ABS and a["category_id"] == 0 for a in d["annotations"]
        )


def test_fixture_has_the_real_nesting(prw_root):
    # The community loaders' accesses (SeqNet): img[0][0] per row of img_index_train; box_new N x 5.
    imgs = loadmat(os.path.join(prw_root, "frame_train.mat"))["img_index_train"]
    assert imgs.shape == (2, 1) and [img[0][0] + ".jpg" for img in imgs] == [
        "c1s1_000151.jpg",
        "c2s1_000200.jpg",
    ]
    assert loadmat(os.path.join(prw_root, "annotations", "c1s1_000151.jpg"))["box_new"].shape == (
        4,
        5,
    )
    assert loadmat(os.path.join(prw_root, "ID_train.mat"))["ID_train"].shape == (1, 3)


def test_train_split_boxes_labels_cameras(prw_root, caplog):
    with caplog.at_level(logging.WARNING):
        dicts = load_prw_scenes(prw_root, "train")
    _check_scenes(dicts, fx.PRW_EXPECTED_TRAIN, prw_root)
    assert "dropped 1 boxes (non-positive width or height)" in caplog.text


def test_gallery_split_keeps_raw_identities(prw_root, caplog):
    with caplog.at_level(logging.WARNING):
        dicts = load_prw_scenes(prw_root, "gallery")
    _check_scenes(dicts, fx.PRW_EXPECTED_GALLERY, prw_root)
    assert "dropped 1 boxes" in caplog.text


def test_queries_crlf_clip_truncate(prw_root):
    raw = open(os.path.join(prw_root, "query_info.txt"), "rb").read()
    assert raw.count(b"\r\n") == 2
    queries = load_prw_queries(prw_root)
    got = [
        (q["image_id"], q["camera_id"], q["query_box"], q["identity"], q["query_index"])
        for q in queries
    ]
    assert got == [
        (n, c, list(map(float, b)), i, k) for k, (n, c, b, i) in enumerate(fx.PRW_EXPECTED_QUERIES)
    ]
    assert all(
        "gallery" not in q and (q["height"], q["width"]) == fx.PRW_SIZES[q["image_id"][:-4]]
        for q in queries
    )


def test_id_lists_and_camera_names(prw_root):
    assert read_prw_id_list(prw_root, "train") == [1, 5, 932]
    assert read_prw_id_list(prw_root, "test") == [7, 8]  # stored as ID_test2, as in the real file
    assert prw_camera_id("c6s2_012345.jpg") == 6
    with pytest.raises(DatasetFormatError, match="c<cam>s<seq>_<frame>"):
        prw_camera_id("frame_001.jpg")


def test_id_train_mismatch_is_logged(tmp_path, prw_root, caplog):
    root = shutil.copytree(prw_root, tmp_path / "prw")
    savemat(os.path.join(root, "ID_train.mat"), {"ID_train": np.array([[1, 5]], dtype=np.float64)})
    with caplog.at_level(logging.WARNING):
        dicts = load_prw_scenes(str(root), "train")
    assert "only in the frames [932]" in caplog.text
    assert (
        max(a["person_id"] for d in dicts for a in d["annotations"]) == 2
    )  # labels follow the frames


def test_missing_annotation_file(tmp_path, prw_root):
    root = shutil.copytree(prw_root, tmp_path / "prw")
    path = os.path.join(root, "annotations", "c2s1_000200.jpg.mat")
    os.remove(path)
    with pytest.raises(
        FileNotFoundError, match="c2s1_000200.jpg.mat: file not found. Expected layout"
    ):
        load_prw_scenes(str(root), "train")


def test_mat_without_expected_key(tmp_path, prw_root):
    root = shutil.copytree(prw_root, tmp_path / "prw")
    path = os.path.join(root, "annotations", "c1s1_000151.jpg.mat")
    savemat(path, {"boxes": np.zeros((1, 5))})
    with pytest.raises(DatasetKeyError) as e:
        load_prw_scenes(str(root), "train")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
    assert (
        str(e.value)
        == f"{path}: none of the keys box_new, anno_file, anno_previous found (has: boxes)"
    )
    savemat(os.path.join(root, "frame_train.mat"), {"names": fx.cell(["c1s1_000151"])})
    with pytest.raises(
        DatasetKeyError, match=r"frame_train.mat: key img_index_train not found \(has: names\)"
    ):
        load_prw_scenes(str(root), "train")


def test_bad_annotation_shape_and_query_line(tmp_path, prw_root):
    root = shutil.copytree(prw_root, tmp_path / "prw")
    savemat(os.path.join(root, "annotations", "c1s1_000151.jpg.mat"), {"box_new": np.zeros((2, 4))})
    with pytest.raises(DatasetFormatError, match=r"expected an N x 5 array .* got shape \(2, 4\)"):
        load_prw_scenes(str(root), "train")
    with open(os.path.join(root, "query_info.txt"), "ab") as f:
        f.write(b"9 1 2 3 c1s2_000300\r\n")
    with pytest.raises(
        DatasetFormatError, match=r"query_info.txt:3: expected 'pid x y w h frame_name'"
    ):
        load_prw_queries(str(root))


def test_missing_image_and_split_file(tmp_path, prw_root):
    root = shutil.copytree(prw_root, tmp_path / "prw")
    os.remove(os.path.join(root, "frames", "c3s2_000400.jpg"))
    with pytest.raises(FileNotFoundError, match="c3s2_000400.jpg: image file not found"):
        load_prw_scenes(str(root), "gallery")
    os.remove(os.path.join(root, "frame_test.mat"))
    with pytest.raises(
        FileNotFoundError, match="frame_test.mat: file not found. Expected layout: <root>/frames"
    ):
        load_prw_scenes(str(root), "gallery")
