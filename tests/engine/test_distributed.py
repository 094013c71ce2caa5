"""Two CPU processes (gloo) started through ``stl_search.compat.launch`` (also where a GPU is
visible) give the same person-search and Re-ID metrics as one process, and Re-ID
pretraining runs its batches under DDP and exports; every process closes its process group
before it exits."""

import atexit
import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from stl_search.compat import launch
from stl_search.data.datasets.builtin import register_synthetic
from stl_search.data.datasets.synthetic import PRESETS, ensure_generated
from stl_search.engine.setup import load_config
from stl_search.evaluation import PersonSearchEvaluator
from stl_search.reid.trainer import (
    build_reid_model,
    evaluate_reid,
    load_reid_train_set,
    run_pretraining,
)

from ..tiny_configs import SHORT_PRETRAINING_OPTS

PREFIX = "dist_syn"
DIM = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _identity_vector(identity: int) -> np.ndarray:
    return np.random.default_rng(1000 + identity).normal(size=DIM)


def _fake_gallery_output(record: dict, index: int) -> dict:
    """Detections near each ground-truth box, embeddings near the person's identity vector, plus
    one false detection: metrics that are neither 0 nor 100."""
    rng = np.random.default_rng(index)
    boxes, scores, embs = [], [], []
    for ann in record["annotations"]:
        boxes.append(
            np.asarray(ann["bbox"], dtype=np.float32) + rng.uniform(-2, 2, 4).astype(np.float32)
        )
        scores.append(rng.uniform(0.55, 1.0))
        embs.append(_unit(_identity_vector(ann["identity"]) + rng.normal(scale=1.2, size=DIM)))
    boxes.append(np.array([1, 1, 20, 40], dtype=np.float32))
    scores.append(0.7)
    embs.append(_unit(rng.normal(size=DIM)))
    inst = Instances((record["height"], record["width"]))
    inst.pred_boxes = Boxes(torch.as_tensor(np.stack(boxes)))
    inst.scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    inst.pred_embeddings = torch.as_tensor(np.stack(embs).astype(np.float32))
    return {"instances": inst}


def _worker(root: str, out_dir: str, repo_root: str) -> None:
    if f"{PREFIX}_train" not in DatasetCatalog.list():
        register_synthetic(PREFIX, root, PRESETS["tiny"])
    rank, world = comm.get_rank(), comm.get_world_size()

    evaluator = PersonSearchEvaluator(f"{PREFIX}_gallery", f"{PREFIX}_query")
    for i, record in enumerate(DatasetCatalog.get(f"{PREFIX}_gallery")):
        if i % world == rank:
            evaluator.process([record], [_fake_gallery_output(record, i)])
    for i, query in enumerate(DatasetCatalog.get(f"{PREFIX}_query")):
        if i % world == rank:
            emb = _unit(
                _identity_vector(query["identity"])
                + np.random.default_rng(50 + i).normal(scale=1.2, size=DIM)
            )
            evaluator.process_queries([query], [{"query_embedding": torch.as_tensor(emb)}])
    person_search = evaluator.evaluate()

    cfg = load_config(
        os.path.join(repo_root, "configs", "STL", "synthetic.yaml"),
        [
            "MODEL.DEVICE",
            "cpu",
            "DATASETS.TRAIN",
            f"('{PREFIX}_train',)",
            "DATASETS.TEST",
            f"('{PREFIX}_gallery',)",
            "DATASETS.QUERY",
            f"('{PREFIX}_query',)",
            "REID.INPUT.SIZE",
            "(32, 16)",
            "REID.SAMPLER.P",
            "4",
            "REID.SAMPLER.K",
            "2",
            *SHORT_PRETRAINING_OPTS,
            "REID.SOLVER.STEPS_EPOCHS",
            "()",
            "REID.LOG_PERIOD",
            "1",
            "SEED",
            "0",
            "OUTPUT_DIR",
            os.path.join(out_dir, "pretrain"),
            "STL.EXPORT_NAME",
            "stl_init.pth",
        ],
    )
    cfg.freeze()
    _, _, num_classes = load_reid_train_set(cfg)
    seed_all_rng(0)
    reid = evaluate_reid(cfg, build_reid_model(cfg, num_classes).eval())
    pretrain = run_pretraining(cfg)
    if comm.is_main_process():
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump(
                {
                    "person_search": person_search,
                    "reid": reid,
                    "pretrain": pretrain,
                    "world": world,
                },
                f,
            )


def _record_group_at_exit(out_dir: str, fail: bool) -> None:
    path = os.path.join(out_dir, f"rank{comm.get_rank()}.json")
    atexit.register(lambda: _write_json(path, {"group_alive": dist.is_initialized()}))
    if fail and comm.get_rank() == 1:
        raise ValueError("main_func failed")


def _write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f)


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
def test_every_process_closes_its_group_before_exiting(tmp_path, fail):
    """A gloo process exiting with its group alive can abort (SIGABRT) at interpreter shutdown.
    When rank 1 raises, the launcher stops rank 0 (waiting at the final barrier) by a signal:
    only rank 1 gets to its exit handlers. The launcher reports the first failed process it sees:
    rank 1's error, or rank 0's barrier losing its connection to rank 1."""
    args = (str(tmp_path), fail)
    if fail:
        with pytest.raises(Exception, match="main_func failed|Connection reset|Connection closed"):
            launch(_record_group_at_exit, 2, dist_url="auto", args=args, device="cpu")
    else:
        launch(_record_group_at_exit, 2, dist_url="auto", args=args, device="cpu")
    for rank in (1,) if fail else (0, 1):
        with open(tmp_path / f"rank{rank}.json") as f:
            assert json.load(f) == {"group_alive": False}, rank


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_two_processes_give_the_metrics_of_one(repo_root, tmp_path):
    root = ensure_generated(str(tmp_path / "synthetic_prw"), PRESETS["tiny"])
    results = {}
    for world in (1, 2):
        out = str(tmp_path / f"world{world}")
        os.makedirs(out)
        launch(_worker, world, dist_url="auto", args=(root, out, repo_root), device="cpu")
        with open(os.path.join(out, "result.json")) as f:
            results[world] = json.load(f)
        assert results[world]["world"] == world
        assert os.path.isfile(os.path.join(out, "pretrain", "stl_init.pth"))

    one, two = _flat(results[1]["person_search"]), _flat(results[2]["person_search"])
    assert one.keys() == two.keys() and "search/mAP" in one
    assert 0 < one["search/mAP"] < 100, one  # a non-trivial case
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    reid_one, reid_two = _flat(results[1]["reid"]), _flat(results[2]["reid"])
    assert reid_one and reid_one.keys() == reid_two.keys()
    for key in reid_one:
        assert reid_two[key] == pytest.approx(reid_one[key], abs=1e-4), key
