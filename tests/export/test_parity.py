"""Exported graphs (TorchScript, ONNX) against the PyTorch model: boxes, embeddings, rankings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.export import ExportedPersonSearch, export_person_search
from stl_search.export.parity import compare_detections, compare_rankings

from ..modeling.helpers import synthetic_input
from .helpers import tiny_export_cfg

CASES = [(mrfp, fmt) for mrfp in (True, False) for fmt in ("torchscript", "onnx")]
IDS = [f"{'mrfp' if m else 'baseline'}-{f}" for m, f in CASES]
# Several sizes (the exported graphs take any) and original frames twice the input size.
SIZES = [(96, 64), (128, 160), (100, 150)]


def _gallery_inputs():
    inputs = []
    for seed, (h, w) in enumerate(SIZES):
        x = synthetic_input(h, w, seed=seed)
        x.update(height=2 * h, width=2 * w)
        del x["instances"]
        inputs.append(x)
    return inputs


@pytest.mark.parametrize("mrfp, fmt", CASES, ids=IDS)
def test_gallery_and_query_parity(exported, mrfp, fmt):
    _, model, out = exported(mrfp, fmt)
    runtime = ExportedPersonSearch(out, num_threads=1)
    gallery = _gallery_inputs()
    with torch.no_grad():
        reference = [model([x])[0]["instances"] for x in gallery]
    outputs = [runtime([x])[0]["instances"] for x in gallery]

    totals = None
    for ref, got in zip(reference, outputs):
        assert len(got) == len(ref) > 0
        totals = compare_detections(ref, got, totals)
        torch.testing.assert_close(got.scores, ref.scores, atol=1e-4, rtol=0)
        assert got.image_size == ref.image_size
    assert totals.unmatched == 0
    assert totals.max_box_diff <= 1.0
    assert totals.min_cosine >= 0.999

    # Queries: the first three detections of every image, embedded through the query graph,
    # ranked against the whole gallery (same top-5 detections, same order).
    queries = [
        dict(x, query_boxes=ref.pred_boxes.tensor[:3] / 2) for x, ref in zip(gallery, reference)
    ]
    with torch.no_grad():
        ref_q = torch.cat([model([q])[0]["query_embedding"] for q in queries])
    got_q = torch.cat([runtime([q])[0]["query_embedding"] for q in queries])
    assert got_q.shape == ref_q.shape == (9, model.roi_heads.id_head.embedding_dim)
    assert float((ref_q * got_q).sum(dim=1).min()) >= 0.999
    # compare_detections paired detection i with i (same order): identity mapping.
    n = sum(len(r) for r in reference)
    assert all(torch.equal(m, torch.arange(len(m))) for m in totals.matches)
    same = compare_rankings(
        ref_q,
        torch.cat([r.pred_embeddings for r in reference]),
        got_q,
        torch.cat([o.pred_embeddings for o in outputs]),
        torch.arange(n),
        k=5,
    )
    assert same == len(queries) * 3


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_predictor_runs_on_the_export(exported, fmt):
    """``PersonSearchPredictor`` with the export as its model (what ``--export DIR`` runs): the same
    detections and query embeddings as with the PyTorch model, from a BGR original image
    (the predictor's mapper resizes it and flips it to the model's RGB)."""
    cfg, model, out = exported(True, fmt)
    assert cfg.INPUT.FORMAT == "RGB"
    bgr = synthetic_input(240, 180, seed=5)["image"].permute(1, 2, 0).numpy().copy()
    reference = PersonSearchPredictor(cfg, model=model)
    predictor = PersonSearchPredictor(cfg, model=ExportedPersonSearch(out, num_threads=1))
    (ref,), (got,) = reference.detect([bgr]), predictor.detect([bgr])
    assert len(got) == len(ref) > 0
    assert np.abs(got.boxes - ref.boxes).max() <= 1.0
    assert (got.embeddings * ref.embeddings).sum(axis=1).min() >= 0.999
    boxes = ref.boxes[:2]
    ref_q, got_q = reference.embed_query(bgr, boxes), predictor.embed_query(bgr, boxes)
    assert got_q.shape == ref_q.shape == (2, model.roi_heads.id_head.embedding_dim)
    assert (ref_q * got_q).sum(axis=1).min() >= 0.999
    # A query box embeds like the same detection in the gallery graph.
    assert (got_q * got.embeddings[:2]).sum(axis=1).min() >= 0.99


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_no_detection_gives_empty_outputs(exported, fmt):
    _, model, out = exported(True, fmt)
    runtime = ExportedPersonSearch(out, num_threads=1, score_thresh=1.1)
    x = _gallery_inputs()[0]
    instances = runtime([x])[0]["instances"]
    assert len(instances) == 0
    assert instances.pred_embeddings.shape == (0, model.roi_heads.id_head.embedding_dim)
    with pytest.raises(ValueError, match="at least one box"):
        runtime([dict(x, query_boxes=torch.zeros((0, 4)))])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_images_with_fewer_proposals_than_the_example_run(fmt, tmp_path):
    """More RPN proposals asked for than NMS leaves (POST_NMS_TOPK_TEST > what survives), so each
    image has its own proposal count: the graph must not keep the example image's."""
    torch.manual_seed(0)
    cfg = tiny_export_cfg(True)
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 3000
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 3000
    model = build_model(cfg).eval()
    export_person_search(model, cfg, str(tmp_path), fmt)
    runtime = ExportedPersonSearch(str(tmp_path), num_threads=1)
    totals = None
    counts = set()
    for x in _gallery_inputs():
        with torch.no_grad():
            ref = model([x])[0]["instances"]
        got = runtime([x])[0]["instances"]
        assert len(got) == len(ref) > 0
        counts.add(len(ref))
        totals = compare_detections(ref, got, totals)
    assert len(counts) > 1  # the images really differ in what survives
    assert totals.unmatched == 0 and totals.max_box_diff <= 1.0 and totals.min_cosine >= 0.999
