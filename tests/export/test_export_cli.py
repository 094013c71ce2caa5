"""``python -m stl_search.export``: files, ``export.json``, settings it refuses."""

from __future__ import annotations

import hashlib
import json
import os

import onnx
import pytest
import torch
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.modeling.proposal_generator import RPN

from stl_search.export import ExportNotSupportedError, check_exportable, export_person_search
from stl_search.export.__main__ import main as export_main
from stl_search.export.graphs import prepare_for_export
from stl_search.export.parity import check_same_settings, compare_detections
from stl_search.export.runtime import ExportedPersonSearch
from stl_search.modeling.sync_free_postprocess import SyncFreeRPN

from ..modeling.helpers import synthetic_input
from ..tiny_configs import tiny_person_search_cfg
from .helpers import tiny_export_cfg


def test_export_json_describes_the_graphs(exported):
    cfg, _, out = exported(True, "onnx")
    with open(os.path.join(out, "export.json")) as f:
        desc = json.load(f)
    assert desc["format"] == "onnx"
    assert sorted(os.listdir(out)) == ["export.json", "gallery.onnx", "query.onnx"]
    pre = desc["preprocessing"]
    assert pre["channel_order"] == "RGB"
    assert pre["pixel_mean"] == list(cfg.MODEL.PIXEL_MEAN)
    assert pre["pixel_std"] == list(cfg.MODEL.PIXEL_STD)
    assert pre["resize"]["short_edge"] == cfg.INPUT.MIN_SIZE_TEST
    assert pre["resize"]["max_size"] == cfg.INPUT.MAX_SIZE_TEST
    assert desc["versions"]["torch"] == torch.__version__
    assert desc["versions"]["onnx"] == onnx.__version__
    assert {"detectron2", "torchvision", "opset"} <= set(desc["versions"])
    assert desc["score_thresh"] == cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
    assert desc["fixed"]["detections_per_image"] == cfg.TEST.DETECTIONS_PER_IMAGE
    # The ONNX files declare what export.json says, with dynamic sizes.
    graph = onnx.load(os.path.join(out, "gallery.onnx")).graph
    names = [i.name for i in graph.input]
    assert names == [t["name"] for t in desc["graphs"]["gallery"]["inputs"]]
    image_dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in image_dims] == [3, "height", "width"]
    assert [o.name for o in graph.output] == ["boxes", "scores", "embeddings"]


def test_cli_exports_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    cfg = tiny_export_cfg(mrfp=False)
    model = build_model(cfg).eval()
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    config = tmp_path / "tiny.yaml"
    config.write_text(cfg.dump())
    out = tmp_path / "ts"
    desc = export_main(
        ["--config-file", str(config), "--format", "torchscript", "--out", str(out)]
        + ["MODEL.WEIGHTS", str(weights)]
    )
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert desc["model"] == {"mrfp": False, "weights": str(weights), "weights_sha256": sha256}
    x = synthetic_input(96, 64, seed=2)
    del x["instances"]
    with torch.no_grad():
        ref = model([x])[0]["instances"]
    runtime = ExportedPersonSearch(str(out))
    assert runtime.made_from(str(weights)) and not runtime.made_from(str(config))
    got = runtime([x])[0]["instances"]
    parity = compare_detections(ref, got)
    assert len(got) == len(ref) > 0 and parity.unmatched == 0
    assert parity.max_box_diff <= 1.0 and parity.min_cosine >= 0.999


@pytest.mark.parametrize(
    "key, value",
    [("TEST.AUG.ENABLED", True), ("MODEL.PROPOSAL_GENERATOR.NAME", "PrecomputedProposals")],
)
def test_unsupported_setting_fails_naming_it(key, value, tmp_path):
    cfg = tiny_person_search_cfg()
    cfg.merge_from_list([key, str(value)])
    with pytest.raises(ExportNotSupportedError, match=key.replace(".", r"\.")):
        check_exportable(cfg)
    # The command refuses it before building anything.
    config = tmp_path / "bad.yaml"
    config.write_text(cfg.dump())
    with pytest.raises(ExportNotSupportedError, match=key.replace(".", r"\.")):
        export_main(["--config-file", str(config), "--format", "onnx", "--out", str(tmp_path)])
    assert os.listdir(tmp_path) == ["bad.yaml"]


def test_unsupported_model_and_format_fail_clearly(exported, tmp_path):
    cfg, model, _ = exported(False, "torchscript")
    with pytest.raises(ValueError, match="--format must be one of"):
        export_person_search(model, cfg, str(tmp_path), "tflite")
    plain = GeneralizedRCNN.__new__(GeneralizedRCNN)
    torch.nn.Module.__init__(plain)
    with pytest.raises(ExportNotSupportedError, match="PersonSearchRCNN"):
        prepare_for_export(plain, cfg)
    with pytest.raises(FileNotFoundError, match="export.json"):
        ExportedPersonSearch(str(tmp_path))


def test_parity_refuses_an_export_made_with_other_settings(exported):
    cfg, _, out = exported(True, "onnx")
    runtime = ExportedPersonSearch(out)
    check_same_settings(runtime, cfg)  # the export's own config: no error
    other = cfg.clone()
    other.TEST.DETECTIONS_PER_IMAGE = cfg.TEST.DETECTIONS_PER_IMAGE + 1
    with pytest.raises(ValueError, match="detections_per_image"):
        check_same_settings(runtime, other)


def test_export_copy_runs_the_reference_rpn(exported):
    cfg, model, _ = exported(True, "torchscript")  # built with SyncFreeRPN (conftest)
    assert type(model.proposal_generator) is SyncFreeRPN
    prepared = prepare_for_export(model, cfg)
    assert type(prepared.proposal_generator) is RPN  # built from the config, same weights
    for k, v in model.proposal_generator.state_dict().items():
        assert torch.equal(prepared.proposal_generator.state_dict()[k], v)
    assert type(model.proposal_generator) is SyncFreeRPN  # the model is untouched
