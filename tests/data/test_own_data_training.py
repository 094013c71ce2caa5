"""A tiny own data set in the person-search JSON format, registered by the config key
DATASETS.PERSON_SEARCH_JSON, trained for a few iterations with the project's trainer and
evaluated end to end (the path train_net.py takes, in process)."""

from __future__ import annotations

import json
import math
import os

import pytest
from detectron2.data import DatasetCatalog
from detectron2.utils.env import seed_all_rng

from stl_search.data.datasets import DatasetFormatError
from stl_search.engine.model import classifier_size_in_weights
from stl_search.engine.setup import load_config
from stl_search.engine.trainer import PersonSearchTrainer
from stl_search.reid.trainer import run_pretraining

from .own_data import QUERIES, write_own_data


def test_train_and_evaluate_on_own_json(repo_root, tmp_path, unique_prefix):
    json_file = write_own_data(str(tmp_path / "data"), name=unique_prefix)
    assert f"{unique_prefix}_train" not in DatasetCatalog.list()
    out = tmp_path / "run"
    cfg = load_config(
        os.path.join(repo_root, "configs", "synthetic", "person_search.yaml"),
        [
            "DATASETS.PERSON_SEARCH_JSON", f"('{json_file}',)",
            "DATASETS.TRAIN", f"('{unique_prefix}_train',)",
            "DATASETS.TEST", f"('{unique_prefix}_gallery',)",
            "DATASETS.QUERY", f"('{unique_prefix}_query',)",
            "SOLVER.MAX_ITER", "2",
            "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.STEPS", "()",
            "SOLVER.WARMUP_ITERS", "0",
            "SOLVER.CHECKPOINT_PERIOD", "100",
            "INPUT.MIN_SIZE_TRAIN", "(96,)",
            "INPUT.MAX_SIZE_TRAIN", "160",
            "INPUT.MIN_SIZE_TEST", "96",
            "INPUT.MAX_SIZE_TEST", "160",
            "DATALOADER.NUM_WORKERS", "0",
            # keep every detection of the barely trained model, so that the search ranks some
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
            "TEST.PERSON_SEARCH.SCORE_THRESH", "0.0",
            "OUTPUT_DIR", str(out),
        ],
    )  # fmt: skip
    seed_all_rng(0)
    trainer = PersonSearchTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    # The ID classifier has one class per training identity of the file (3, 8, 11).
    assert classifier_size_in_weights(str(out / "model_final.pth")) == 3
    with open(out / "eval_metrics.json") as f:
        metrics = json.load(f)["metrics"]
    assert set(metrics) == {"search", "search_multi_view", "detection"}
    assert set(metrics["search"]) == {"mAP", "top1", "top5", "top10"}
    assert all(0.0 <= v <= 100.0 and math.isfinite(v) for v in metrics["search"].values())
    gallery = f"{unique_prefix}_gallery"
    with open(out / "inference" / gallery / f"person_search_{gallery}.json") as f:
        details = json.load(f)
    assert details["protocol"] == "prw"
    queries = details["searches"]["all"]["queries"]
    assert len(queries) == len(QUERIES)
    # targets: the probe's person 42 in two gallery frames; 3 and 8 each in one frame besides
    # the query's own (excluded in the "all" protocol)
    assert [q["num_gt"] for q in queries] == [2, 1, 1]
    assert all(q["ranked"] for q in queries)


def test_config_key_refuses_a_broken_file(tmp_path, unique_prefix):
    json_file = write_own_data(str(tmp_path), name=unique_prefix)
    with open(json_file) as f:
        data = json.load(f)
    data["queries"][0]["bbox"] = [60, 15, 26, 0]
    with open(json_file, "w") as f:
        json.dump(data, f)
    with pytest.raises(DatasetFormatError, match=r"queries\[0\] .*field 'bbox': zero-size box"):
        load_config(None, ["DATASETS.PERSON_SEARCH_JSON", f"('{json_file}',)"])
    assert f"{unique_prefix}_train" not in DatasetCatalog.list()


def test_stl_pretraining_on_own_json(repo_root, tmp_path, unique_prefix):
    """STL step 1 (Re-ID pretraining on the crops) and its export on the same file, by config."""
    json_file = write_own_data(str(tmp_path / "data"), name=unique_prefix)
    out = tmp_path / "stl"
    cfg = load_config(
        os.path.join(repo_root, "configs", "STL", "synthetic.yaml"),
        [
            "DATASETS.PERSON_SEARCH_JSON", f"('{json_file}',)",
            "DATASETS.TRAIN", f"('{unique_prefix}_train',)",
            "DATASETS.TEST", f"('{unique_prefix}_gallery',)",
            "DATASETS.QUERY", f"('{unique_prefix}_query',)",
            "REID.SOLVER.MAX_EPOCHS", "1",
            "REID.SOLVER.ITERS_PER_EPOCH", "2",
            "REID.SOLVER.WARMUP_EPOCHS", "0",
            "REID.TEST_PERIOD_EPOCHS", "0",
            "REID.INPUT.CACHE_CROPS", "False",
            "REID.SAMPLER.P", "3",
            "OUTPUT_DIR", str(out),
        ],
    )  # fmt: skip
    results = run_pretraining(cfg)["reid"]
    # Re-ID protocol: a query's same-camera crops of its identity are ignored, which leaves the
    # third query (person 8, camera 2) without a match (its other crop is also camera 2).
    assert (results["num_queries"], results["num_skipped"]) == (2, 1)
    assert 0 <= results["mAP"] <= 100
    assert (out / "stl_init.pth").exists()
