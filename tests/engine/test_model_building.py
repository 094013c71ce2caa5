"""Building the person-search model outside ``modeling``: identity metadata from the training set
for training, from the weights file for inference (no training set needed), and the trainer
Detectron2's ``DefaultTrainer`` builds (``AMPTrainer`` with AMP, CPU DDP with two processes)."""

import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.modeling import build_model
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from stl_search.compat import launch
from stl_search.data.datasets import num_training_identities
from stl_search.data.datasets.builtin import register_synthetic
from stl_search.data.datasets.synthetic import PRESETS, ensure_generated
from stl_search.engine.model import (
    build_inference_model,
    classifier_size_in_weights,
    resolve_training_metadata,
)
from stl_search.engine.setup import load_config
from stl_search.engine.trainer import PersonSearchTrainer
from stl_search.modeling.losses import identity_instance_counts
from stl_search.utils.checkpoint import AtomicCheckpointer, WeightsMismatchError

from ..tiny_configs import SHORT_TRAIN_OPTS, tiny_person_search_cfg, train_only_datasets

PREFIX = "building_syn"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return ensure_generated(
        os.path.join(str(tmp_path_factory.mktemp("building")), "synthetic_prw"), PRESETS["tiny"]
    )


def _trainer_cfg(repo_root, root, out_dir, *opts):
    if f"{PREFIX}_train" not in DatasetCatalog.list():
        register_synthetic(PREFIX, root, PRESETS["tiny"])
    return load_config(
        os.path.join(repo_root, "configs", "synthetic", "person_search.yaml"),
        [
            "MODEL.DEVICE",
            "cpu",
            *train_only_datasets(PREFIX),
            *SHORT_TRAIN_OPTS,
            "SOLVER.MAX_ITER",
            "2",
            "SOLVER.STEPS",
            "()",
            "SOLVER.WARMUP_ITERS",
            "0",
            "SEED",
            "3",
            "OUTPUT_DIR",
            str(out_dir),
            *opts,
        ],
    )


@pytest.mark.parametrize("loss,key", [("CE", "classifier.weight"), ("OIM", "lut")])
def test_inference_model_is_sized_from_its_weights_without_a_training_set(tmp_path, loss, key):
    cfg = tiny_person_search_cfg()
    cfg.MODEL.PERSON_SEARCH.ID_LOSS = loss
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 9
    trained = build_model(cfg)
    AtomicCheckpointer(trained, save_dir=str(tmp_path)).save("model_final")
    weights = str(tmp_path / "model_final.pth")
    assert classifier_size_in_weights(weights) == 9

    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 0
    cfg.DATASETS.TRAIN = ("never_registered_train",)
    cfg.MODEL.WEIGHTS = weights
    with pytest.raises(KeyError, match="never_registered_train"):
        resolve_training_metadata(cfg)  # what the training path would need
    model = build_inference_model(cfg)
    assert not model.training
    expected = trained.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert model.state_dict()[f"roi_heads.id_loss.{key}"].shape[0] == 9


def test_inference_model_from_weights_without_a_classifier(tmp_path):
    cfg = tiny_person_search_cfg()
    without_classifier = {
        k: v
        for k, v in build_model(cfg).state_dict().items()
        if not k.startswith("roi_heads.id_loss.")
    }
    torch.save({"model": without_classifier}, tmp_path / "init.pth")
    assert classifier_size_in_weights(str(tmp_path / "init.pth")) is None
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 0
    cfg.DATASETS.TRAIN = ()
    cfg.MODEL.WEIGHTS = str(tmp_path / "init.pth")
    model = build_inference_model(cfg)
    assert model.roi_heads.id_loss.classifier.weight.shape[0] == 1
    for name, tensor in without_classifier.items():
        assert torch.equal(model.state_dict()[name], tensor), name
    # Weights of the backbone only would leave the detector random: refused.
    backbone_only = {k: v for k, v in without_classifier.items() if k.startswith("backbone.")}
    torch.save({"model": backbone_only}, tmp_path / "backbone.pth")
    cfg.MODEL.WEIGHTS = str(tmp_path / "backbone.pth")
    with pytest.raises(WeightsMismatchError, match="backbone.pth does not fit.*proposal_generator"):
        build_inference_model(cfg)


def test_training_metadata_read_from_the_training_set(repo_root, tiny_root, tmp_path):
    cfg = _trainer_cfg(
        repo_root,
        tiny_root,
        tmp_path,
        "MODEL.PERSON_SEARCH.NUM_IDENTITIES",
        "0",
        "MODEL.PERSON_SEARCH.ID_LOSS",
        "CB_CE",
    )
    resolved = resolve_training_metadata(cfg).MODEL.PERSON_SEARCH
    num_ids = num_training_identities(f"{PREFIX}_train")
    counts = identity_instance_counts(DatasetCatalog.get(f"{PREFIX}_train"), num_ids)
    assert num_ids > 1 and resolved.NUM_IDENTITIES == num_ids
    assert resolved.IDENTITY_COUNTS == [int(c) for c in counts] and sum(counts) > num_ids
    assert (
        cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES == 0 and not cfg.MODEL.PERSON_SEARCH.IDENTITY_COUNTS
    )

    set_by_hand = _trainer_cfg(
        repo_root, tiny_root, tmp_path, "MODEL.PERSON_SEARCH.NUM_IDENTITIES", "4"
    )
    assert resolve_training_metadata(set_by_hand) is set_by_hand  # CE with the count given


def test_amp_on_cpu_is_refused(repo_root, tiny_root, tmp_path):
    cfg = _trainer_cfg(repo_root, tiny_root, tmp_path, "SOLVER.AMP.ENABLED", "True")
    with pytest.raises(ValueError, match="SOLVER.AMP.ENABLED needs CUDA"):
        PersonSearchTrainer(cfg)


@pytest.mark.parametrize("steps,late", [("(2,)", "[2]"), ("(1, 5)", "[5]")])
def test_a_learning_rate_step_that_never_happens_is_refused(
    repo_root, tiny_root, tmp_path, steps, late
):
    cfg = _trainer_cfg(repo_root, tiny_root, tmp_path, "SOLVER.STEPS", steps)  # MAX_ITER 2
    with pytest.raises(ValueError, match=r"SOLVER.STEPS .* at or after SOLVER.MAX_ITER 2") as e:
        PersonSearchTrainer(cfg)
    assert f"step(s) {late}" in str(e.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP needs CUDA")
def test_amp_builds_detectron2_amp_trainer(repo_root, tiny_root, tmp_path):
    cfg = _trainer_cfg(
        repo_root, tiny_root, tmp_path, "SOLVER.AMP.ENABLED", "True", "MODEL.DEVICE", "cuda"
    )
    trainer = PersonSearchTrainer(cfg)
    assert type(trainer._trainer) is AMPTrainer
    trainer.train()
    assert trainer.iter == cfg.SOLVER.MAX_ITER


def _ddp_worker(repo_root, root, out_dir):
    trainer = PersonSearchTrainer(_trainer_cfg(repo_root, root, out_dir))
    trainer.train()
    if comm.is_main_process():
        with open(os.path.join(out_dir, "ddp.json"), "w") as f:
            json.dump(
                {
                    "world": comm.get_world_size(),
                    "ddp": isinstance(trainer.model, DistributedDataParallel),
                    "device_ids": trainer.model.device_ids,
                    "simple": type(trainer._trainer) is SimpleTrainer,
                    "iter": trainer.iter,
                },
                f,
            )


def test_two_cpu_processes_train_under_ddp(repo_root, tiny_root, tmp_path):
    launch(
        _ddp_worker, 2, dist_url="auto", args=(repo_root, tiny_root, str(tmp_path)), device="cpu"
    )
    with open(tmp_path / "ddp.json") as f:
        result = json.load(f)
    assert result == {"world": 2, "ddp": True, "device_ids": None, "simple": True, "iter": 2}
