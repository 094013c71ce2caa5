"""Weights that do not fit the model are an error, not a log line: an initialisation may leave
only the parts STL leaves untrained (RPN, box head, ID classifier; the embedding BN from ImageNet
weights), ``--eval-only`` / search / export need every weight, and ``--resume`` checks the
checkpoint's shapes before the optimizer state is touched."""

import copy
import logging

import pytest
import torch
from detectron2.modeling import build_model

from stl_search.engine.checkpoint import PersonSearchCheckpointer
from stl_search.engine.model import build_inference_model
from stl_search.reid.model import ReIDNet
from stl_search.reid.stl_init import export_for_person_search, save_person_search_init
from stl_search.utils.checkpoint import AtomicCheckpointer, WeightsMismatchError

from ..reid.helpers import tiny_reid_cfg
from ..tiny_configs import tiny_person_search_cfg


def _stl_export(tmp_path, depth=50, bnneck=True):
    reid = ReIDNet(tiny_reid_cfg(depth), num_classes=5).state_dict()
    if not bnneck:  # as converted ImageNet weights
        reid = {k: v for k, v in reid.items() if not k.startswith("bnneck.")}
    path = str(tmp_path / f"init_r{depth}_{bnneck}.pth")
    save_person_search_init(export_for_person_search(reid, require_bnneck=bnneck), path)
    return path


def _initialise(model, path, **kwargs):
    return PersonSearchCheckpointer(model, **kwargs).resume_or_load(path, resume=False)


def test_stl_and_imagenet_initialisations_load(tmp_path):
    model = build_model(tiny_person_search_cfg())
    _initialise(model, _stl_export(tmp_path))
    _initialise(model, _stl_export(tmp_path, bnneck=False))  # Table 2's ImageNet rows


def test_a_resnet18_export_does_not_initialise_a_resnet50_model(tmp_path, caplog):
    path = _stl_export(tmp_path, depth=18)
    model = build_model(tiny_person_search_cfg(depth=50))
    with pytest.raises(WeightsMismatchError) as error:
        _initialise(model, path)
    message = str(error.value)
    assert path in message and "missing" in message and "another shape" in message
    assert "backbone.res2." in message and "MODEL.ALLOW_PARTIAL_WEIGHTS" in message
    # The documented way to train from them anyway: a warning naming the keys.
    with caplog.at_level(logging.WARNING):
        _initialise(model, path, allow_partial_weights=True)
    assert "does not fit the model" in caplog.text and "ALLOW_PARTIAL_WEIGHTS is set" in caplog.text


def test_an_stl_export_missing_one_backbone_weight_is_an_error(tmp_path):
    reid = ReIDNet(tiny_reid_cfg(), num_classes=5).state_dict()
    exported = export_for_person_search(reid)
    del exported["roi_heads.id_head.res5.2.conv3.weight"]
    save_person_search_init(exported, str(tmp_path / "init.pth"))
    with pytest.raises(WeightsMismatchError, match=r"1 model weights .*res5\.2\.conv3\.weight"):
        _initialise(build_model(tiny_person_search_cfg()), str(tmp_path / "init.pth"))


def _inference_cfg(weights, **overrides):
    cfg = tiny_person_search_cfg()
    cfg.MODEL.WEIGHTS = weights
    for key, value in overrides.items():
        setattr(cfg.MODEL.PERSON_SEARCH, key, value)
    return cfg


def test_eval_only_and_search_refuse_weights_that_leave_the_model_random(tmp_path):
    trained = build_model(tiny_person_search_cfg())
    torch.save({"model": trained.state_dict()}, tmp_path / "trained.pth")
    model = build_inference_model(_inference_cfg(str(tmp_path / "trained.pth")))
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    torch.save({"model": {"some.other.weight": torch.ones(3)}}, tmp_path / "other.pth")
    with pytest.raises(WeightsMismatchError, match="other.pth does not fit the model"):
        build_inference_model(_inference_cfg(str(tmp_path / "other.pth")))
    # An STL export is an initialisation, not a trained person-search model.
    with pytest.raises(WeightsMismatchError, match="proposal_generator"):
        build_inference_model(_inference_cfg(_stl_export(tmp_path)))


def test_resume_with_another_width_fails_before_touching_the_optimizer(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    AtomicCheckpointer(model, str(tmp_path), optimizer=optimizer).save("model_0000017")

    wider = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Linear(8, 1))
    wider_optimizer = torch.optim.SGD(wider.parameters(), lr=0.1, momentum=0.9)
    before = copy.deepcopy(wider_optimizer.state_dict())
    ckpt = AtomicCheckpointer(wider, str(tmp_path), optimizer=wider_optimizer)
    with pytest.raises(WeightsMismatchError, match=r"0\.weight: \(4, 3\) in the file, \(8, 3\)"):
        ckpt.resume_or_load("", resume=True)
    assert wider_optimizer.state_dict() == before


def test_a_mismatch_names_the_config_the_weights_were_trained_with(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {"0.weight": torch.ones(4, 3)}}, run / "model_final.pth")
    narrow = torch.nn.Sequential(torch.nn.Linear(3, 8))
    with pytest.raises(WeightsMismatchError) as error:
        AtomicCheckpointer(narrow, load_may_miss=()).load(str(run / "model_final.pth"))
    assert "config.yaml" not in str(error.value)  # none beside it: nothing said
    (run / "config.yaml").write_text("MODEL:\n  DEVICE: cpu\n")
    with pytest.raises(WeightsMismatchError) as error:
        AtomicCheckpointer(narrow, load_may_miss=()).load(str(run / "model_final.pth"))
    assert f"left its config beside it: {run / 'config.yaml'}" in str(error.value)
