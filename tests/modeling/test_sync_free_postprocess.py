"""The sync-free post-processing (``MODEL.PROPOSAL_GENERATOR.NAME: SyncFreeRPN`` and
``MODEL.ROI_HEADS.SYNC_FREE_INFERENCE``) gives the reference path's detections and embeddings.

The same weights run through Detectron2's post-processing (reference) and through
``stl_search.modeling.sync_free_postprocess``: the same number of detections in the same order,
the same classes, boxes within 0.5 px (in practice equal), scores and embeddings equal to float
rounding; at batch 1 and 2, with a score threshold that filters candidates, and with degenerate
candidates (non-finite RPN proposals and box predictions, proposals below the RPN's minimum
size, detections that are empty in the output frame).
"""

from __future__ import annotations

import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from stl_search.modeling.sync_free_postprocess import SyncFreeRPN

from .helpers import assert_same_instances, rescaled_inputs, run_inference, synthetic_input


def sync_free(cfg):
    """A copy of ``cfg`` on the sync-free path, selected by name as in the paper configs."""
    cfg = cfg.clone()
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "SyncFreeRPN"
    cfg.MODEL.ROI_HEADS.SYNC_FREE_INFERENCE = True
    return cfg


def _models(cfg, state_dict=None):
    ref = build_model(cfg).eval()
    if state_dict is not None:
        ref.load_state_dict(state_dict)
    fast = build_model(sync_free(cfg)).eval()
    fast.load_state_dict(ref.state_dict())  # same parameter names: a strict load
    assert isinstance(fast.proposal_generator, SyncFreeRPN) and fast.roi_heads.sync_free_inference
    assert not isinstance(ref.proposal_generator, SyncFreeRPN)
    assert not ref.roi_heads.sync_free_inference
    return ref, fast


@pytest.mark.parametrize("batch", [1, 2])
def test_same_detections_and_embeddings_as_the_reference_path(cfg, batch):
    ref, fast = _models(cfg)
    inputs = rescaled_inputs()
    expected = run_inference(ref, inputs, batch)
    assert all(len(x) > 0 for x in expected)
    assert_same_instances(expected, run_inference(fast, inputs, batch))
    # Without post-processing: the detections in the input frame.
    assert_same_instances(
        run_inference(ref, inputs, batch, False), run_inference(fast, inputs, batch, False)
    )


@pytest.mark.parametrize("batch", [1, 2])
def test_same_detections_when_the_score_threshold_filters_candidates(cfg, batch):
    inputs = rescaled_inputs()
    ref, _ = _models(cfg)
    scores = torch.cat([x.scores for x in run_inference(ref, inputs, 1)])
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = scores.median().item()
    ref, fast = _models(cfg, ref.state_dict())
    expected = run_inference(ref, inputs, batch)
    n = sum(len(x) for x in expected)
    assert 0 < n < len(scores)  # the threshold dropped some, not all
    assert_same_instances(expected, run_inference(fast, inputs, batch))


def _every_third_row_nan(fn):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, (list, tuple)):
            return type(out)(_nan_rows(x) for x in out)
        return _nan_rows(out)

    return wrapped


def _nan_rows(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    rows = x.view(-1, x.shape[-1]) if x.dim() > 2 else x
    rows[::3] = math.nan
    return x


def _make_degenerate(model):
    """Non-finite RPN proposals and box predictions on every third row, and box deltas that move
    every detection left by 1.5 box widths (those whose left edge is within half their width of
    the image's left border end up empty after clipping)."""
    rpn, predictor = model.proposal_generator, model.roi_heads.box_predictor
    rpn._decode_proposals = _every_third_row_nan(rpn._decode_proposals)
    predictor.predict_boxes = _every_third_row_nan(predictor.predict_boxes)
    with torch.no_grad():
        predictor.bbox_pred.weight.zero_()
        # Box2BoxTransform divides dx by 10: -15 moves a box by 1.5 widths.
        predictor.bbox_pred.bias.copy_(torch.tensor([-15.0, 0.0, 0.0, 0.0]))
    return model


@pytest.mark.parametrize("batch", [1, 2])
def test_same_detections_with_degenerate_and_empty_boxes(cfg, batch):
    cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 12  # the RPN drops small proposals
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 200  # fewer survive: dropped ones reach the box head
    ref, fast = (_make_degenerate(m) for m in _models(cfg))
    inputs = rescaled_inputs()
    expected = run_inference(ref, inputs, batch)
    # The degenerate cases happen: empty boxes in the output frame are dropped by the reference,
    # and the sync-free RPN passes -inf proposals on.
    raw = run_inference(ref, inputs, batch, do_postprocess=False)
    assert sum(len(x) for x in expected) < sum(len(x) for x in raw)
    assert sum(len(x) for x in expected) > 0
    with torch.no_grad():
        images = fast.preprocess_image(inputs[:1])
        proposals, _ = fast.proposal_generator(images, fast.backbone(images.tensor), None)
    assert torch.isinf(proposals[0].objectness_logits).any()
    assert_same_instances(expected, run_inference(fast, inputs, batch))
    assert_same_instances(raw, run_inference(fast, inputs, batch, do_postprocess=False))


def test_mixed_gallery_and_query_batch(cfg):
    ref, fast = _models(cfg)
    inputs = rescaled_inputs()[:2]
    query = dict(inputs[1], query_boxes=torch.tensor([[4.0, 4.0, 30.0, 80.0]]))
    with torch.no_grad():
        a, b = ref([inputs[0], query]), fast([inputs[0], query])
    assert_same_instances([a[0]["instances"]], [b[0]["instances"]])
    torch.testing.assert_close(b[1]["query_embedding"], a[1]["query_embedding"])


def test_off_by_default_and_training_unchanged(cfg):
    assert cfg.MODEL.PROPOSAL_GENERATOR.NAME == "RPN"
    assert not cfg.MODEL.ROI_HEADS.SYNC_FREE_INFERENCE
    ref, fast = _models(cfg)
    ref.train()
    fast.train()
    batch = [synthetic_input(seed=0), synthetic_input(seed=1)]
    with EventStorage(0):
        torch.manual_seed(0)
        a = ref(batch)
        torch.manual_seed(0)
        b = fast(batch)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k])


def test_same_detections_under_bfloat16_autocast(cfg):
    """RoI pooling bypasses ``ROIPooler`` (and so its float32-features hook) on this path."""
    cfg.TEST.AMP.ENABLED = True
    cfg.TEST.AMP.DTYPE = "bfloat16"
    ref, fast = _models(cfg)
    inputs = rescaled_inputs()
    assert_same_instances(run_inference(ref, inputs, 2), run_inference(fast, inputs, 2))
