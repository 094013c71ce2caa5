"""STL step 2: ReIDNet weights → person-search keys, loaded into a real PersonSearchRCNN."""

import logging

import pytest
import torch
from detectron2.modeling import build_model

from stl_search.engine.checkpoint import PersonSearchCheckpointer
from stl_search.engine.setup import load_config
from stl_search.reid.model import ReIDNet
from stl_search.reid.stl_init import (
    PERSON_SEARCH_UNINITIALISED,
    crop_size_mismatch,
    describe_missing_keys,
    export_for_person_search,
    load_model_state_dict,
    save_person_search_init,
)
from stl_search.reid.stl_init import (
    main as stl_init_main,
)

from ..tiny_configs import tiny_person_search_cfg
from .helpers import tiny_reid_cfg


def _randomised_reid_net():
    net = ReIDNet(tiny_reid_cfg(), num_classes=5)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    return net


def _load(model, path):
    ckpt = PersonSearchCheckpointer(model)
    return ckpt._load_model(ckpt._load_file(path))


def _expected_missing(model):
    return {k for k in model.state_dict() if k.startswith(tuple(PERSON_SEARCH_UNINITIALISED))}


@pytest.mark.parametrize("mrfp,freeze_at", [(True, 0), (True, 2), (False, 0)])
def test_export_loads_into_person_search_with_exactly_the_detector_and_classifier_missing(
    tmp_path, mrfp, freeze_at
):
    net = _randomised_reid_net()
    reid_sd = net.state_dict()
    pretrain = tmp_path / "model_final.pth"
    torch.save({"model": reid_sd, "iteration": 3}, pretrain)
    out = tmp_path / "stl_init.pth"
    args = [str(pretrain), str(out)] + ([] if mrfp else ["--no-mrfp-neck"])
    assert stl_init_main(args) == 0

    model = build_model(tiny_person_search_cfg(mrfp=mrfp, freeze_at=freeze_at))
    incompatible = _load(model, str(out))
    assert set(incompatible.missing_keys) == _expected_missing(model)
    assert incompatible.unexpected_keys == [] and incompatible.incorrect_shapes == []

    ps = model.state_dict()
    pairs = {
        "backbone.stem.conv1.weight": "backbone.stem.conv1.weight",
        "backbone.res3.0.conv1.norm.IN.weight": "backbone.res3.0.conv1.norm.IN.weight",
        "backbone.res4.1.conv2.weight": "roi_heads.id_head.res4.1.conv2.weight",
        "backbone.res5.0.shortcut.norm.running_var": (
            "roi_heads.id_head.res5.0.shortcut.norm.running_var"
        ),
        "bnneck.weight": "roi_heads.id_head.bnneck.weight",
        "bnneck.running_mean": "roi_heads.id_head.bnneck.running_mean",
    }
    if mrfp:
        pairs["backbone.res3.1.conv3.weight"] = "roi_heads.id_pooler.neck.1.conv3.weight"
    for src, dst in pairs.items():
        torch.testing.assert_close(ps[dst], reid_sd[src], msg=dst)

    message = describe_missing_keys(incompatible.missing_keys)
    assert "RPN" in message and "box head" in message and "ID classifier" in message
    assert "UNEXPECTEDLY" not in message


def test_a_backbone_key_left_unloaded_is_detected(tmp_path):
    exported = export_for_person_search(_randomised_reid_net().state_dict())
    dropped = "roi_heads.id_head.res5.2.conv3.weight"
    del exported[dropped]
    save_person_search_init(exported, str(tmp_path / "init.pth"))
    model = build_model(tiny_person_search_cfg())
    incompatible = _load(model, str(tmp_path / "init.pth"))
    assert set(incompatible.missing_keys) == _expected_missing(model) | {dropped}
    assert "UNEXPECTEDLY MISSING" in describe_missing_keys(incompatible.missing_keys)


def test_export_rejects_unknown_keys_and_accepts_ddp_prefix(tmp_path):
    sd = _randomised_reid_net().state_dict()
    ddp = {"module." + k: v for k, v in sd.items()}
    assert export_for_person_search(ddp).keys() == export_for_person_search(sd).keys()
    with pytest.raises(KeyError, match="outside the ReIDNet layout"):
        export_for_person_search({**sd, "head.extra.weight": torch.zeros(1)})
    torch.save({"model": sd}, tmp_path / "c.pth")
    assert load_model_state_dict(str(tmp_path / "c.pth")).keys() == sd.keys()


@pytest.mark.parametrize(
    "stl_cfg,ps_cfg,neck",
    [
        ("STL/synthetic.yaml", "synthetic/person_search.yaml", True),
        ("STL/PRW.yaml", "PRW/stl_mrfp.yaml", True),
        ("STL/CUHK-SYSU.yaml", "CUHK-SYSU/stl.yaml", False),
    ],
)
def test_stl_config_export_loads_into_its_person_search_config(
    tmp_path, repo_root, stl_cfg, ps_cfg, neck
):
    """The STL configs and the person-search configs they initialise share one backbone."""
    reid_cfg = load_config(f"{repo_root}/configs/{stl_cfg}")
    ps_cfg = load_config(
        f"{repo_root}/configs/{ps_cfg}",
        ["MODEL.PERSON_SEARCH.NUM_IDENTITIES", "7", "MODEL.DEVICE", "cpu"],
    )
    save_person_search_init(
        export_for_person_search(ReIDNet(reid_cfg, num_classes=7).state_dict(), mrfp_neck=neck),
        str(tmp_path / "init.pth"),
    )
    model = build_model(ps_cfg)
    incompatible = _load(model, str(tmp_path / "init.pth"))
    assert set(incompatible.missing_keys) == _expected_missing(model)
    assert incompatible.unexpected_keys == [] and incompatible.incorrect_shapes == []
    # ... and the pretraining crops cover what the identification RoIs cover.
    assert (
        crop_size_mismatch(reid_cfg.REID.INPUT.SIZE, model.roi_heads.id_pooler.output_shape) is None
    )


@pytest.mark.parametrize("crop,warns", [((64, 32), False), ((32, 16), True)])
def test_loading_warns_when_pretraining_crops_do_not_match_the_id_rois(tmp_path, crop, warns):
    """tiny_person_search_cfg: 8x4 identification RoIs on the stride-8 res3, i.e. 64x32 crops."""
    save_person_search_init(
        export_for_person_search(_randomised_reid_net().state_dict()),
        str(tmp_path / "init.pth"),
        reid_input_size=crop,
    )
    model = build_model(tiny_person_search_cfg())
    checkpointer = PersonSearchCheckpointer(model)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    checkpointer.logger.addHandler(handler)
    try:
        checkpointer.resume_or_load(str(tmp_path / "init.pth"), resume=False)  # an initialisation
    finally:
        checkpointer.logger.removeHandler(handler)
    messages = [r.getMessage() for r in records if "pretrained on" in r.getMessage()]
    if warns:
        assert len(messages) == 1
        assert "32x16 crops" in messages[0] and "REID.INPUT.SIZE (64, 32)" in messages[0]
        assert "POOLER_RESOLUTION (4, 2)" in messages[0]
    else:
        assert messages == []


def test_export_refuses_to_overwrite_its_input(tmp_path):
    pretrain = tmp_path / "model_final.pth"
    torch.save({"model": _randomised_reid_net().state_dict(), "iteration": 3}, pretrain)
    before = pretrain.read_bytes()
    (tmp_path / "link.pth").symlink_to(pretrain)
    for out in (pretrain, tmp_path / "." / "model_final.pth", tmp_path / "link.pth"):
        with pytest.raises(SystemExit):
            stl_init_main([str(pretrain), str(out)])
    assert pretrain.read_bytes() == before
