"""MovieNet-PS loader and registration on a fixture written in its distributed format: the
training level chooses identities and images, each gallery size has its own pool, the
``Train_app`` rows are read with the nesting the authors' loader reads."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from scipy.io import loadmat, savemat

from stl_search.data.datasets import register_movienet_ps
from stl_search.data.datasets.common import DatasetFormatError
from stl_search.data.datasets.movienet_ps import (
    load_movienet_ps_queries,
    load_movienet_ps_scenes,
)
from stl_search.data.stats import main as stats_main
from stl_search.engine.setup import load_config

from . import movienet_fixtures as mfx

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def movienet_root(tmp_path_factory) -> str:
    return mfx.write_movienet_ps(str(tmp_path_factory.mktemp("MovieNet-PS")))


def test_fixture_has_the_nesting_the_authors_loader_reads(movienet_root):
    tt = os.path.join(movienet_root, "annotation", "test", "train_test")
    train = loadmat(os.path.join(tt, "Train_app10.mat"))["Train"]
    assert train.shape == (2, 3)
    # their accesses: for item in Train.squeeze(): for name, box, _ in item[2]; and
    # for t in Train[:, 2]: for app in t: app[0][0]
    item = train.squeeze()[0]
    assert [(str(n[0]), b.squeeze().astype(int).tolist()) for n, b, _ in item[2]] == [
        ("m1.jpg", [10, 20, 30, 60]),
        ("m2.jpg", [40, 10, 30, 60]),
    ]
    assert [app[0][0] for t in train[:, 2] for app in t] == ["m1.jpg", "m2.jpg", "m1.jpg"]
    pool = loadmat(os.path.join(movienet_root, "annotation", "pool_4000.mat"))["pool"]
    assert [str(a.squeeze()) for a in pool.squeeze()] == ["m5.jpg", "m4.jpg"]


def _check(dicts, expected, image_dir):
    assert [d["image_id"] for d in dicts] == list(expected)
    for d in dicts:
        assert d["file_name"] == os.path.join(os.path.abspath(image_dir), d["image_id"])
        assert (d["height"], d["width"]) == mfx.SIZES[d["image_id"]]
        got = [(a["bbox"], a["person_id"], a["identity"]) for a in d["annotations"]]
        assert got == [(list(map(float, b)), p, i) for b, p, i in expected[d["image_id"]]]


@pytest.mark.parametrize(
    "level,expected", [(10, mfx.EXPECTED_TRAIN_APP10), (30, mfx.EXPECTED_TRAIN_APP30)]
)
def test_training_level_chooses_identities_and_images(movienet_root, level, expected):
    dicts = load_movienet_ps_scenes(movienet_root, "train", train_appearances=level)
    _check(dicts, expected, os.path.join(movienet_root, "Image"))


@pytest.mark.parametrize("size", [2000, 4000])
def test_each_gallery_size_has_its_pool_and_protocol(movienet_root, size):
    dicts = load_movienet_ps_scenes(movienet_root, "gallery", gallery_size=size)
    _check(dicts, mfx.EXPECTED_GALLERY[size], os.path.join(movienet_root, "Image"))
    queries = load_movienet_ps_queries(movienet_root, size)
    got = [
        (
            q["identity"],
            q["image_id"],
            q["query_box"],
            [(g["image_id"], g["bbox"]) for g in q["gallery"]],
        )
        for q in queries
    ]
    assert got == [
        (
            i,
            n,
            list(map(float, b)),
            [(gn, None if gb is None else list(map(float, gb))) for gn, gb in g],
        )
        for i, n, b, g in mfx.PROTOCOLS[size]
    ]


def test_cuhk_sysu_image_folder_is_accepted(tmp_path):
    root = mfx.write_movienet_ps(str(tmp_path / "mv"), image_subdir=os.path.join("Image", "SSM"))
    dicts = load_movienet_ps_scenes(root, "train")
    _check(dicts, mfx.EXPECTED_TRAIN_APP10, os.path.join(root, "Image", "SSM"))


def test_rows_without_an_identity_number_use_their_row(tmp_path):
    root = mfx.write_movienet_ps(str(tmp_path / "mv"))
    rows = [("", apps) for _, apps in mfx.TRAIN_ROWS[10]]
    path = os.path.join(root, "annotation", "test", "train_test", "Train_app50.mat")
    savemat(path, {"Train": mfx.train_cell(rows)})
    dicts = load_movienet_ps_scenes(root, "train", train_appearances=50)
    ids = {(d["image_id"], a["identity"], a["person_id"]) for d in dicts for a in d["annotations"]}
    assert ids == {("m1.jpg", 1, 0), ("m1.jpg", 2, 1), ("m2.jpg", -1, -1), ("m2.jpg", 1, 0)}


def test_bad_files_name_the_file_and_record(tmp_path):
    root = mfx.write_movienet_ps(str(tmp_path / "mv"))
    tt = os.path.join(root, "annotation", "test", "train_test")
    savemat(os.path.join(tt, "Train_app70.mat"), {"Train": mfx.cell(["p1", "p2"])})
    with pytest.raises(DatasetFormatError, match=r"Train_app70\.mat:Train: expected one row of 3"):
        load_movienet_ps_scenes(root, "train", train_appearances=70)
    rows = [("p1", [("nowhere.jpg", (1, 1, 5, 5))])]
    savemat(os.path.join(tt, "Train_app100.mat"), {"Train": mfx.train_cell(rows)})
    with pytest.raises(DatasetFormatError, match=r"Train_app100\.mat: image 'nowhere.jpg'"):
        load_movienet_ps_scenes(root, "train", train_appearances=100)
    with pytest.raises(FileNotFoundError, match=r"pool_10000\.mat"):
        load_movienet_ps_scenes(root, "gallery", gallery_size=10000)
    shutil.rmtree(os.path.join(root, "Image"))
    with pytest.raises(FileNotFoundError, match="m1.jpg"):
        load_movienet_ps_scenes(root, "train")


def test_registration_links_levels_and_gallery_sizes(movienet_root, unique_prefix):
    names = register_movienet_ps(unique_prefix, movienet_root)
    p = unique_prefix
    assert set(names) == {
        f"{p}_train", f"{p}_gallery", f"{p}_query",
        *(f"{p}_train_app{n}" for n in (10, 30, 50, 70, 100)),
        *(f"{p}_gallery_g{g}" for g in (2000, 4000, 10000)),
        *(f"{p}_query_g{g}" for g in (2000, 4000, 10000)),
    }  # fmt: skip
    assert MetadataCatalog.get(f"{p}_gallery").query_name == f"{p}_query"
    assert MetadataCatalog.get(f"{p}_query").gallery_size == 2000
    assert MetadataCatalog.get(f"{p}_query_g4000").gallery_name == f"{p}_gallery_g4000"
    assert MetadataCatalog.get(f"{p}_gallery_g4000").query_name == f"{p}_query_g4000"
    assert [d["image_id"] for d in DatasetCatalog.get(f"{p}_gallery_g4000")] == ["m5.jpg", "m4.jpg"]
    assert len(DatasetCatalog.get(f"{p}_train")) == 2
    DatasetCatalog.get(f"{p}_train_app30")
    assert MetadataCatalog.get(f"{p}_train_app30").num_identities == 3
    assert MetadataCatalog.get(f"{p}_train").num_identities == 2
    assert np.all(
        [
            m in DatasetCatalog.list()
            for m in ("movienet_ps_train_app100", "movienet_ps_query_g10000")
        ]
    )


def test_builtin_names_and_documented_stats_command(movienet_root, tmp_path, monkeypatch, capsys):
    """docs/movienet-ps.md: ``python -m stl_search.data.stats movienet_ps_train`` under
    ``$DETECTRON2_DATASETS/MovieNet-PS``."""
    os.symlink(movienet_root, tmp_path / "MovieNet-PS")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    stats = stats_main(["movienet_ps_train"])
    assert stats["images"] == 2 and stats["identities"] == 2
    assert "movienet_ps_train" in capsys.readouterr().out
    assert [q["identity"] for q in DatasetCatalog.get("movienet_ps_query_g4000")] == [200]


MOVIENET_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "MovieNet-PS", "*.yaml")))


@pytest.mark.parametrize("path", MOVIENET_CONFIGS, ids=os.path.basename)
def test_configs_mirror_cuhk_sysu_on_registered_splits(path):
    cfg = load_config(path, ["MODEL.DEVICE", "cpu"])
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST, *cfg.DATASETS.QUERY):
        assert name in DatasetCatalog.list(), name
    assert cfg.DATASETS.TRAIN == ("movienet_ps_train",)
    assert list(cfg.TEST.PERSON_SEARCH.CUHK_GALLERY_SIZES) == []
    twin = load_config(path.replace("MovieNet-PS", "CUHK-SYSU"), ["MODEL.DEVICE", "cpu"])
    weights = twin.MODEL.WEIGHTS.replace("cuhk_sysu", "movienet_ps")
    assert cfg.MODEL.WEIGHTS == weights
    cfg.defrost(), twin.defrost()
    cfg.MODEL.WEIGHTS = twin.MODEL.WEIGHTS = ""
    assert cfg.MODEL == twin.MODEL and cfg.INPUT == twin.INPUT and cfg.SOLVER == twin.SOLVER
