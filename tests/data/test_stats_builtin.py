"""Data set statistics CLI and the lazy, idempotent registration of the built-in sets."""

from __future__ import annotations

import importlib
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from stl_search.data import num_training_identities, register_cuhk_sysu, register_prw
from stl_search.data.datasets import builtin
from stl_search.data.stats import main

from . import fixtures as fx


def test_stats_cli_writes_png(prw_root, unique_prefix, tmp_path, capsys):
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
