"""Re-ID pretraining weights must fit ReIDNet: an initialisation may leave only the BN neck and
the training-only parts (classifier, centres) as built, an --eval-only run needs every evaluated
weight (stl_search.reid.trainer)."""

import pytest
import torch

from stl_search.reid.model import ReIDNet
from stl_search.reid.trainer import run_pretraining
from stl_search.utils.checkpoint import WeightsMismatchError

from .helpers import crop_sets, tiny_reid_cfg


def _backbone_file(tmp_path, depth):
    net = ReIDNet(tiny_reid_cfg(depth), num_classes=3)
    sd = {k: v for k, v in net.state_dict().items() if k.startswith("backbone.")}
    path = tmp_path / f"imagenet_r{depth}_reid.pth"
    torch.save({"model": sd}, path)  # the layout of convert_imagenet --for reid
    return str(path)


def _cfg(tmp_path, weights, depth=18):
    cfg = tiny_reid_cfg(depth, output_dir=str(tmp_path / "out"))
    cfg.MODEL.WEIGHTS = weights
    return cfg


def test_reid_initialisation_of_another_depth_is_refused(tmp_path):
    train, test = crop_sets(train_ids=4, per_id=2, test_ids=2)
    with pytest.raises(WeightsMismatchError, match="imagenet_r18_reid.pth does not fit"):
        run_pretraining(
            _cfg(tmp_path, _backbone_file(tmp_path, 18), depth=50),
            train_set=train,
            test_set=test,
        )


def test_reid_eval_only_needs_the_evaluated_weights(tmp_path):
    train, test = crop_sets(train_ids=4, per_id=2, test_ids=2)
    # ImageNet weights have no BN neck: fine to start training from, not a model to evaluate.
    with pytest.raises(WeightsMismatchError, match=r"bnneck\."):
        run_pretraining(
            _cfg(tmp_path, _backbone_file(tmp_path, 18)),
            eval_only=True,
            train_set=train,
            test_set=test,
        )
    # A trained model's classifier may have another size: it is not evaluated.
    trained = ReIDNet(tiny_reid_cfg(18), num_classes=9)
    torch.save({"model": trained.state_dict()}, tmp_path / "trained.pth")
    results = run_pretraining(
        _cfg(tmp_path, str(tmp_path / "trained.pth")),
        eval_only=True,
        train_set=train,
        test_set=test,
    )
    assert "mAP" in results["reid"]
