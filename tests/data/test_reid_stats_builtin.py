"""Re-ID crop set, stats CLI and the lazy, idempotent registration."""

from __future__ import annotations

import importlib
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from stl_search.data import num_training_identities, register_cuhk_sysu, register_prw
from stl_search.data.reid import ReIDCropDataset, build_reid_records, build_reid_test_records

from . import fixtures as fx


def test_reid_records_labeled_only(prw_root, unique_prefix):
    train, gallery, query = register_prw(unique_prefix, prw_root)
    records = build_reid_records(train)
    expected = [
        (img, list(map(float, b)), p, i, cam)
        for img, (cam, annos) in fx.PRW_EXPECTED_TRAIN.items()
        for b, p, i in annos
        if p >= 0
    ]
    assert [
        (r["image_id"], r["bbox"], r["person_id"], r["identity"], r["camera_id"]) for r in records
    ] == expected
    q, g = build_reid_test_records(query, gallery)
    assert [(r["identity"], r["camera_id"], r["bbox"]) for r in q] == [
        (i, c, list(map(float, b))) for _, c, b, i in fx.PRW_EXPECTED_QUERIES
    ]
    assert [(r["image_id"], r["identity"]) for r in g] == [
        (img, i)
        for img, (_, annos) in fx.PRW_EXPECTED_GALLERY.items()
        for _, _, i in annos
        if i >= 0
    ]
    assert all(r["person_id"] == -1 for r in q + g)


def test_crop_dataset_lazy_and_cached(prw_root, unique_prefix, tmp_path):
    records = build_reid_records(register_prw(unique_prefix, prw_root)[0])
    ds = ReIDCropDataset(records, (32, 16))
    item = ds[0]
    assert item["image"].shape == (32, 16, 3) and item["image"].dtype == np.uint8
    assert (item["person_id"], item["identity"], item["camera_id"], item["index"]) == (0, 1, 1, 0)
    # The crop is the box [10, 20, 40, 81] of the BGR frame, resized.
    frame = cv2.imread(records[0]["file_name"])
    assert np.array_equal(
        item["image"], cv2.resize(frame[20:81, 10:40], (16, 32), interpolation=cv2.INTER_LINEAR)
    )
    rgb = ReIDCropDataset(records, (32, 16), image_format="RGB")[0]["image"]
    assert np.array_equal(rgb, item["image"][..., ::-1])
    cached = ReIDCropDataset(records, (32, 16), cache_file=str(tmp_path / "crops.npy"))
    assert all(np.array_equal(cached[i]["image"], ds[i]["image"]) for i in range(len(ds)))
    mtime = os.path.getmtime(tmp_path / "crops.npy")
    ReIDCropDataset(
        records, (32, 16), cache_file=str(tmp_path / "crops.npy")
    )  # reused, not rewritten
    assert os.path.getmtime(tmp_path / "crops.npy") == mtime
    import pickle

    clone = pickle.loads(pickle.dumps(cached))  # as sent to a DataLoader worker
    assert np.array_equal(clone[1]["image"], ds[1]["image"])


def test_stats_cli_writes_png(prw_root, unique_prefix, tmp_path, capsys):
    from stl_search.data.stats import main

    train = register_prw(unique_prefix, prw_root)[0]
    out = str(tmp_path / "tail.png")
    stats = main([train, "--out", out])
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert (stats["images"], stats["boxes"], stats["labeled_boxes"], stats["identities"]) == (
        2,
        5,
        4,
        3,
    )
    assert stats["instances_per_identity"] == [2, 1, 1]
    text = capsys.readouterr().out
    assert "identities: 3" in text and "tail: 2 identities seen once, 1 twice" in text


def test_builtin_names_lazy_and_idempotent(tmp_path, monkeypatch):
    import stl_search.data.datasets.builtin as builtin

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "nowhere"))
    importlib.reload(builtin)
    builtin.register_all_builtin()  # twice: no error
    names = set(DatasetCatalog.list())
    expected = {
        "prw_train",
        "prw_gallery",
        "prw_query",
        "cuhk_sysu_train",
        "cuhk_sysu_gallery",
        "cuhk_sysu_query",
        "synthetic_train",
        "synthetic_gallery",
        "synthetic_query",
    } | {f"cuhk_sysu_query_g{s}" for s in (50, 100, 500, 1000, 2000, 4000)}
    assert expected <= names
    meta = MetadataCatalog.get("cuhk_sysu_query_g500")
    assert (meta.thing_classes, meta.evaluator_type, meta.protocol, meta.gallery_size) == (
        ["person"],
        "person_search",
        "cuhk_sysu",
        500,
    )
    assert MetadataCatalog.get("prw_gallery").query_name == "prw_query"
    assert not (tmp_path / "nowhere").exists()  # nothing read or generated at registration
    with pytest.raises(
        FileNotFoundError, match=r"nowhere/PRW-v16.04.20/frame_train.mat: file not found"
    ):
        DatasetCatalog.get("prw_train")


def test_builtin_root_from_environment(tmp_path, monkeypatch, prw_root, cuhk_root):
    os.symlink(prw_root, tmp_path / "PRW")  # the alternative directory name
    os.symlink(cuhk_root, tmp_path / "CUHK-SYSU")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    import stl_search.data  # noqa: F401

    assert [d["image_id"] for d in DatasetCatalog.get("prw_gallery")] == list(
        fx.PRW_EXPECTED_GALLERY
    )
    assert [q["query_index"] for q in DatasetCatalog.get("cuhk_sysu_query")] == [0, 1]
    assert len(DatasetCatalog.get("cuhk_sysu_query")[0]["gallery"]) == 4  # TestG100
    assert num_training_identities("cuhk_sysu_train") == 2
    assert MetadataCatalog.get("cuhk_sysu_train").identity_to_person_id == {3: 0, 20: 1}


def test_register_twice(prw_root, cuhk_root, unique_prefix):
    assert register_prw(unique_prefix, prw_root) == register_prw(unique_prefix, prw_root)
    with pytest.raises(ValueError, match="already registered with root"):
        register_prw(unique_prefix, cuhk_root)
    names = register_cuhk_sysu(unique_prefix + "_c", cuhk_root)
    assert len(names) == 2 + 1 + 6
    assert num_training_identities(names[0]) == 2
