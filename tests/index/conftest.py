"""Fixtures of the index tests: a tiny synthetic gallery, a tiny random-weight model saved as a
checkpoint with its config as YAML, and a one-process index of the gallery built once."""

from __future__ import annotations

import os

import pytest
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from stl_search.data.datasets.builtin import register_synthetic
from stl_search.data.datasets.synthetic import PRESETS
from stl_search.utils.checkpoint import AtomicCheckpointer

from ..tiny_configs import tiny_person_search_cfg
from .helpers import build_index, gallery_of


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """``(config YAML path, cfg)`` of a tiny random-weight model saved to disk; every detection
    is kept (score threshold 0)."""
    folder = str(tmp_path_factory.mktemp("index_model"))
    cfg = tiny_person_search_cfg()
    cfg.TEST.PERSON_SEARCH.SCORE_THRESH = 0.0
    seed_all_rng(0)
    AtomicCheckpointer(build_model(cfg), save_dir=folder).save("model")
    cfg.MODEL.WEIGHTS = os.path.join(folder, "model.pth")
    config = os.path.join(folder, "config.yaml")
    with open(config, "w") as f:
        f.write(cfg.dump())
    return config, cfg


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """``(gallery folder of 6 images, query dicts)`` of the tiny synthetic set."""
    root = str(tmp_path_factory.mktemp("index_data"))
    register_synthetic("index_syn", os.path.join(root, "synthetic_prw"), PRESETS["tiny"])
    gallery = os.path.join(root, "gallery")
    os.makedirs(gallery)
    for record in DatasetCatalog.get("index_syn_gallery"):
        os.symlink(
            record["file_name"], os.path.join(gallery, os.path.basename(record["file_name"]))
        )
    return gallery, DatasetCatalog.get("index_syn_query")


@pytest.fixture(scope="session")
def gallery_index(tmp_path_factory, tiny_model, synthetic):
    """The one-process exact index of the synthetic gallery, 2 images per shard."""
    folder = str(tmp_path_factory.mktemp("index_one") / "index")
    build_index(folder, tiny_model[0], synthetic[0])
    return folder


@pytest.fixture(scope="session")
def two_images(tmp_path_factory, synthetic):
    """A gallery folder of the first two synthetic gallery images."""
    folder = tmp_path_factory.mktemp("index_two") / "two"
    return gallery_of(folder, synthetic[0], sorted(os.listdir(synthetic[0]))[:2])
