"""configs/lazy/mrfp_synthetic.py: ``LazyConfig.load`` + ``instantiate`` build the person-search
model (the same structure as the YAML config builds), its loaders, optimizer and schedule; one
training step runs, the evaluator scores the test loader (gallery then queries) through
Detectron2's ``inference_on_dataset``, and the config saves as YAML (as
``tools/lazyconfig_train_net.py`` does)."""

import math
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import SimpleTrainer
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model

from stl_search.engine.model import resolve_training_metadata
from stl_search.engine.setup import load_config

LAZY = os.path.join("configs", "lazy", "mrfp_synthetic.py")
YAML = os.path.join("configs", "synthetic", "person_search.yaml")


@pytest.fixture
def lazy_cfg(repo_root, data_root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", data_root)  # the built-in synthetic_* names
    cfg = LazyConfig.load(os.path.join(repo_root, LAZY))
    # The tiny set's frames are 96 x 160: no upsampling, two images per batch.
    cfg.dataloader.train.total_batch_size = 2
    resize = cfg.dataloader.train.mapper.augmentations[0]
    resize.short_edge_length, resize.max_size = (96,), 160
    for loader in cfg.dataloader.test.loaders:
        resize = loader.mapper.augmentations[0]
        resize.short_edge_length, resize.max_size = 96, 160
    return cfg


def _layout(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_lazy_model_equals_the_yaml_model_in_structure(repo_root, lazy_cfg):
    lazy_model = instantiate(lazy_cfg.model)
    yaml_cfg = resolve_training_metadata(load_config(os.path.join(repo_root, YAML), []))
    yaml_model = build_model(yaml_cfg)
    assert yaml_cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES == 6  # the tiny set's training identities
    assert _layout(lazy_model) == _layout(yaml_model)
    assert str(lazy_model) == str(yaml_model)  # same modules, hyper-parameters in their reprs
    assert lazy_model.roi_heads.id_loss.classifier.out_features == 6


def test_lazy_model_trains_one_step_and_evaluates(lazy_cfg, tmp_path):
    torch.manual_seed(0)
    model = instantiate(lazy_cfg.model).train()
    lazy_cfg.optimizer.params.model = model
    optimizer = instantiate(lazy_cfg.optimizer)
    scheduler = instantiate(lazy_cfg.lr_multiplier)
    assert scheduler(0.0) == pytest.approx(0.01) and scheduler(0.9) == pytest.approx(0.1)

    batch = next(iter(instantiate(lazy_cfg.dataloader.train)))
    assert len(batch) == 2 and all(b["instances"].has("gt_person_ids") for b in batch)
    before = model.roi_heads.id_loss.classifier.weight.detach().clone()
    # As lazyconfig_train_net.py trains. A fresh loader: a second iterator over v0.6's
    # AspectRatioGroupedDataset never yields (the first one's bucket is left full).
    trainer = SimpleTrainer(model, instantiate(lazy_cfg.dataloader.train), optimizer)
    trainer.train(0, 1)
    losses = {k: v for k, (v, _) in trainer.storage.latest().items() if k.startswith("loss")}
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_id"}
    assert all(math.isfinite(v) for v in losses.values()) and losses["loss_id"] > 0
    assert not torch.equal(before, model.roi_heads.id_loss.classifier.weight)

    lazy_cfg.dataloader.evaluator.output_dir = str(tmp_path)
    loader = instantiate(lazy_cfg.dataloader.test)
    results = inference_on_dataset(model, loader, instantiate(lazy_cfg.dataloader.evaluator))
    assert set(results) >= {"search", "detection"}
    assert 0.0 <= results["search"]["mAP"] <= 100.0
    assert os.path.isfile(tmp_path / "person_search_synthetic_gallery.json")


def test_lazy_config_saves_as_yaml_and_reloads(lazy_cfg, tmp_path):
    path = str(tmp_path / "config.yaml")
    LazyConfig.save(lazy_cfg, path)
    assert os.path.isfile(path) and not os.path.exists(path + ".pkl")  # no pickle fallback
    again = LazyConfig.load(path)
    assert _layout(instantiate(again.model)) == _layout(instantiate(lazy_cfg.model))
