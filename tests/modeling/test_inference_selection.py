"""Which inference code runs is the config's, by name: ``MODEL.PROPOSAL_GENERATOR.NAME`` and
``MODEL.ROI_HEADS.SYNC_FREE_INFERENCE``; the meta architecture's ``_postprocess`` is Detectron2's
in numbers."""

from __future__ import annotations

import pytest
import torch
import yaml
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.modeling.proposal_generator import RPN
from detectron2.structures import Boxes, Instances

from stl_search.engine.setup import ConfigKeyError, load_config
from stl_search.modeling import PersonSearchRCNN

from .helpers import assert_same_instances, rescaled_inputs, run_inference


@pytest.mark.parametrize("value", [True, False])
def test_the_removed_fast_path_key_names_its_replacement(tmp_path, value):
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump({"TEST": {"FAST_PATH": {"SYNC_FREE_POSTPROCESS": value}}}))
    with pytest.raises(ConfigKeyError) as info:
        load_config(str(old))
    message = str(info.value)
    assert str(old) in message and "TEST.FAST_PATH.SYNC_FREE_POSTPROCESS" in message
    assert "SyncFreeRPN" in message and "MODEL.ROI_HEADS.SYNC_FREE_INFERENCE" in message
    with pytest.raises(ConfigKeyError, match="SyncFreeRPN"):
        load_config(None, ["TEST.FAST_PATH.SYNC_FREE_POSTPROCESS", "True"])


def test_sync_free_rpn_needs_the_sync_free_roi_heads(cfg):
    """The reference box step would score the SyncFreeRPN's dropped (-inf) proposals as real."""
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "SyncFreeRPN"
    with pytest.raises(ValueError, match="MODEL.ROI_HEADS.SYNC_FREE_INFERENCE True"):
        build_model(cfg)


def test_sync_free_roi_heads_on_the_reference_rpn_give_the_same_detections(cfg):
    ref = build_model(cfg).eval()
    cfg = cfg.clone()
    cfg.MODEL.ROI_HEADS.SYNC_FREE_INFERENCE = True
    heads_only = build_model(cfg).eval()
    heads_only.load_state_dict(ref.state_dict())
    assert type(heads_only.proposal_generator) is RPN and heads_only.roi_heads.sync_free_inference
    inputs = rescaled_inputs()
    assert_same_instances(run_inference(ref, inputs, 2), run_inference(heads_only, inputs, 2))


def _instances(size, boxes, seed):
    g = torch.Generator().manual_seed(seed)
    inst = Instances(size)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.rand(len(boxes), generator=g)
    inst.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
    inst.pred_embeddings = torch.randn(len(boxes), 4, generator=g)
    return inst


def test_postprocess_is_detectron2s_in_numbers():
    """Scaled, clipped, empty boxes dropped (one on the border, one collapsed by clipping, one of
    zero width), in order, with every field; an image without detections; no output size."""
    size = (60, 40)
    boxes = [
        [1.5, 2.25, 30.0, 50.0],
        [-5.0, 3.0, 0.0, 20.0],  # empty after clipping
        [10.0, 10.0, 10.0, 30.0],  # zero width
        [35.0, 41.0, 80.0, 90.0],  # partly outside
        [39.999, 0.0, 40.0, 0.001],  # tiny
    ]
    instances = [_instances(size, boxes, 0), _instances(size, [], 1), _instances(size, boxes, 2)]
    inputs = [{"height": 91, "width": 57}, {"height": 30, "width": 20}, {}]
    sizes = [size] * 3

    def clone(xs):
        return [
            Instances(x.image_size, **{k: v.clone() for k, v in x.get_fields().items()}) for x in xs
        ]

    expected = GeneralizedRCNN._postprocess(clone(instances), inputs, sizes)
    got = PersonSearchRCNN._postprocess(instances, inputs, sizes)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        a, b = a["instances"], b["instances"]
        assert a.image_size == b.image_size and list(a.get_fields()) == list(b.get_fields())
        for k, v in a.get_fields().items():
            v, w = (v.tensor, b.get(k).tensor) if isinstance(v, Boxes) else (v, b.get(k))
            assert torch.equal(v, w), k
    assert [len(x["instances"]) for x in got] == [3, 0, 3]
