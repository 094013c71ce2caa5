"""CUHK-SYSU loader on a fixture written in the distributed format: boxes, identities, splits and
every TestG gallery-protocol entry (file order, duplicates, empty idlocate → None)."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from stl_search.data.datasets.common import (
    DatasetFormatError,
    DatasetKeyError,
    mat_str,
    struct_elements,
)
from stl_search.data.datasets.cuhk_sysu import load_cuhk_sysu_queries, load_cuhk_sysu_scenes

from . import fixtures as fx


def test_fixture_has_the_real_nesting(cuhk_root):
    ann = os.path.join(cuhk_root, "annotation")
    img = loadmat(os.path.join(ann, "Images.mat"))["Img"]
    assert img.shape == (1, 4) and img.dtype.names == ("imname", "nAppear", "box")
    assert img[0, 0]["box"].shape == (1, 3) and img[0, 0]["box"][0, 0]["idlocate"].shape == (1, 4)
    # SeqNet's accesses: for name, _, boxes in Img.squeeze(); b[0] for b in boxes[0]
    name, _, boxes = img.squeeze()[0]
    assert str(name[0]) == "s1.jpg" and np.asarray([b[0] for b in boxes[0]]).reshape(
        -1, 4
    ).shape == (3, 4)
    assert [str(a[0]) for a in loadmat(os.path.join(ann, "pool.mat"))["pool"].squeeze()] == [
        "s3.jpg",
        "s4.jpg",
    ]
    train = loadmat(os.path.join(ann, "test", "train_test", "Train.mat"))["Train"]
    assert train.shape == (2, 1) and train[0, 0].shape == (1, 1)
    scenes = train.squeeze()[0][0, 0][2].squeeze()
    assert [str(n[0]) for n, _, _ in scenes] == ["s1.jpg", "s2.jpg"]
    g = loadmat(os.path.join(ann, "test", "train_test", "TestG50.mat"))["TestG50"]
    assert (
        g.shape == (1, 2)
        and g[0, 0]["Query"].shape == (1, 1)
        and g[0, 0]["Gallery"].shape == (1, 3)
    )
    assert str(g.squeeze()["Query"][0]["imname"][0, 0][0]) == "s3.jpg"
    assert g[0, 0]["Gallery"][0, 1]["idlocate"].size == 0


def _check(dicts, expected, root):
    assert [d["image_id"] for d in dicts] == list(expected)
    for d in dicts:
        assert d["file_name"] == os.path.join(os.path.abspath(root), "Image", "SSM", d["image_id"])
        assert (d["height"], d["width"], d["camera_id"]) == (*fx.CUHK_SIZES[d["image_id"]], -1)
        got = [(a["bbox"], a["person_id"], a["identity"]) for a in d["annotations"]]
        assert got == [(list(map(float, b)), p, i) for b, p, i in expected[d["image_id"]]], d[
            "image_id"
        ]


def test_train_split(cuhk_root, caplog):
    with caplog.at_level(logging.WARNING):
        dicts = load_cuhk_sysu_scenes(cuhk_root, "train")
    _check(dicts, fx.CUHK_EXPECTED_TRAIN, cuhk_root)
    assert "dropped 1 boxes" in caplog.text


def test_gallery_split_identities_from_protocols(cuhk_root):
    _check(load_cuhk_sysu_scenes(cuhk_root, "gallery"), fx.CUHK_EXPECTED_GALLERY, cuhk_root)


@pytest.mark.parametrize(
    "size,expected", [(50, fx.CUHK_EXPECTED_G50), (100, fx.CUHK_EXPECTED_G100)]
)
def test_query_protocol_entries(cuhk_root, size, expected):
    queries = load_cuhk_sysu_queries(cuhk_root, size)
    assert len(queries) == len(expected)
    for k, (q, (identity, image, qbox, gallery)) in enumerate(zip(queries, expected)):
        assert (q["identity"], q["image_id"], q["query_box"], q["query_index"]) == (
            identity,
            image,
            list(map(float, qbox)),
            k,
        )
        assert q["gallery"] == [
            {"image_id": n, "bbox": None if b is None else list(map(float, b))} for n, b in gallery
        ]
        assert (q["height"], q["width"], q["camera_id"]) == (*fx.CUHK_SIZES[image], -1)


def test_unmatched_train_box_is_logged(tmp_path, cuhk_root, caplog):
    root = str(shutil.copytree(cuhk_root, tmp_path / "cuhk"))
    path = os.path.join(root, "annotation", "test", "train_test", "Train.mat")
    train = loadmat(path)["Train"]
    train[1, 0][0, 0]["scene"][0, 0]["idlocate"] = fx.box(1, 1, 5, 5)
    savemat(path, {"Train": train})
    with caplog.at_level(logging.WARNING):
        dicts = load_cuhk_sysu_scenes(root, "train")
    assert "1 labeled boxes of" in caplog.text and "match no valid box of Images.mat" in caplog.text
    assert {a["identity"] for d in dicts for a in d["annotations"]} == {20, -1}


def test_a_box_entirely_outside_its_image_is_dropped_and_counted(tmp_path, cuhk_root, caplog):
    root = str(shutil.copytree(cuhk_root, tmp_path / "cuhk"))
    path = os.path.join(root, "annotation", "Images.mat")
    img = loadmat(path)["Img"]
    img[0, 1]["box"][0, 0]["idlocate"] = fx.box(105, 5, 25, 50)  # s2.jpg is 100 wide
    savemat(path, {"Img": img})
    with caplog.at_level(logging.WARNING):
        dicts = load_cuhk_sysu_scenes(root, "train")
    assert "dropped 1 boxes (entirely outside the image)" in caplog.text
    s2 = next(d for d in dicts if d["image_id"] == "s2.jpg")
    assert [a["bbox"] for a in s2["annotations"]] == [[40.0, 10.0, 70.0, 70.0]]


def test_errors_name_file_and_key(tmp_path, cuhk_root):
    root = str(shutil.copytree(cuhk_root, tmp_path / "cuhk"))
    tt = os.path.join(root, "annotation", "test", "train_test")
    with pytest.raises(FileNotFoundError, match=r"TestG500.mat: file not found. Expected layout"):
        load_cuhk_sysu_queries(root, 500)
    savemat(os.path.join(tt, "TestG50.mat"), {"TestG100": fx._protocol(fx.CUHK_EXPECTED_G50)})
    with pytest.raises(
        DatasetKeyError, match=r"TestG50.mat: key TestG50 not found \(has: TestG100\)"
    ):
        load_cuhk_sysu_queries(root, 50)
    imgs = loadmat(os.path.join(root, "annotation", "Images.mat"))["Img"]
    bad = fx.struct([{"imname": "s1.jpg", "boxes": imgs[0, 0]["box"]}], ["imname", "boxes"])
    savemat(os.path.join(root, "annotation", "Images.mat"), {"Img": bad})
    with pytest.raises(
        DatasetKeyError,
        match=r"Images.mat:Img: struct field\(s\) box not found \(has: imname, boxes\)",
    ):
        load_cuhk_sysu_scenes(root, "train")
    savemat(os.path.join(root, "annotation", "Images.mat"), {"Img": imgs})
    savemat(os.path.join(root, "annotation", "pool.mat"), {"pool": fx.cell(["s3.jpg", "s9.jpg"])})
    with pytest.raises(
        DatasetFormatError, match=r"pool.mat: 1 pool images are not in .*Images.mat"
    ):
        load_cuhk_sysu_scenes(root, "gallery")


def test_struct_helpers_edge_cases():
    assert struct_elements(np.zeros((0, 0)), ("idlocate",), "x") == []
    with pytest.raises(DatasetFormatError, match="where: expected a struct array"):
        struct_elements(np.ones((1, 4)), ("idlocate",), "where")
    assert mat_str(np.array([[np.array(["s1.jpg"])]], dtype=object), "x") == "s1.jpg"
    with pytest.raises(DatasetFormatError, match="y: expected a string"):
        mat_str(np.array(["a", "b"]), "y")
