"""The search command: detects in every gallery image, ranks by similarity, prints and draws."""

import os

import cv2
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from stl_search import search
from stl_search.data.datasets.builtin import register_synthetic
from stl_search.data.datasets.synthetic import PRESETS
from stl_search.engine.model import resolve_training_metadata
from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.engine.setup import load_config
from stl_search.index import folder_search
from stl_search.utils.checkpoint import AtomicCheckpointer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = os.path.join(str(tmp_path_factory.mktemp("search")), "synthetic_prw")
    register_synthetic("search_syn", root, PRESETS["tiny"])
    return "search_syn"


def test_search_ranks_gallery_and_draws(repo_root, tiny, tmp_path, capsys):
    config = os.path.join(repo_root, "configs", "synthetic", "person_search.yaml")
    overrides = [
        "MODEL.DEVICE",
        "cpu",
        "DATASETS.TRAIN",
        f"('{tiny}_train',)",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.0",
        "INPUT.MIN_SIZE_TEST",
        "96",
        "INPUT.MAX_SIZE_TEST",
        "160",
    ]
    cfg = load_config(config, overrides)
    seed_all_rng(0)
    model = build_model(resolve_training_metadata(cfg))
    weights = str(tmp_path / "model.pth")
    AtomicCheckpointer(model, save_dir=str(tmp_path)).save("model")

    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for record in DatasetCatalog.get(f"{tiny}_gallery")[:3]:
        os.symlink(record["file_name"], gallery / os.path.basename(record["file_name"]))
    query = DatasetCatalog.get(f"{tiny}_query")[0]
    out = tmp_path / "result.png"
    hits = search.main(
        [
            "--config-file",
            config,
            "--query",
            query["file_name"],
            "--box",
            *map(str, query["query_box"]),
            "--gallery",
            str(gallery),
            "--out",
            str(out),
            "--topk",
            "3",
            "MODEL.WEIGHTS",
            weights,
            *overrides[2:],
            # Searching needs no training set: the classifier is sized from the weights file.
            "DATASETS.TRAIN",
            "('never_registered_train',)",
        ]
    )

    assert hits, "no detections in the gallery"
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in sims)
    assert {os.path.dirname(h.file_name) for h in hits} == {str(gallery)}
    printed = capsys.readouterr().out
    assert "rank" in printed and f"saved {out}" in printed and printed.count(str(gallery)) == 3
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[0] == 240 and picture.shape[1] > 240 * 2


def test_search_rejects_a_box_outside_the_image(repo_root, tiny, tmp_path):
    query = DatasetCatalog.get(f"{tiny}_query")[0]
    cfg = load_config(
        os.path.join(repo_root, "configs", "synthetic", "person_search.yaml"),
        ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", f"('{tiny}_train',)"],
    )
    with pytest.raises(ValueError, match="not a box inside"):
        predictor = PersonSearchPredictor(cfg, model=torch.nn.Identity())
        folder_search.search(predictor, query["file_name"], [0, 0, 1e5, 10], [])


@pytest.mark.parametrize(
    "out, message",
    [("no_such_folder/result.png", "does not exist"), ("result.xyz", "cannot write '.xyz'")],
)
def test_search_checks_its_output_before_any_work(tmp_path, out, message):
    """A bad ``--out`` fails at once, naming the path, before a model is built or a gallery read."""
    with pytest.raises((ValueError, FileNotFoundError), match=message) as raised:
        search.main(
            [
                "--config-file",
                "no_such_config.yaml",
                "--query",
                "q.jpg",
                "--box",
                "0",
                "0",
                "1",
                "1",
            ]
            + ["--gallery", str(tmp_path), "--out", str(tmp_path / out)]
        )
    assert out.split("/")[-1] in str(raised.value)
