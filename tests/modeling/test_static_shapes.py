"""The static-shape gallery forward (``TEST.FAST_PATH.STATIC_SHAPES``): the same detections and
embeddings as the reference and the sync-free paths, and one graph under
``torch.compile(fullgraph=True)`` (no graph break: no host read, no data-dependent shape).

Exactness as in test_fast_path.py: the same detections (boxes within 0.5 px, in the same order)
and embeddings with cosine >= 0.9999.
"""

from __future__ import annotations

import pytest
import torch
from detectron2.modeling import build_model
from torchvision.ops import batched_nms

from stl_search.modeling.fast_path import prepare_inference_model
from stl_search.modeling.static_postprocess import greedy_nms_mask

from .helpers import (
    assert_same_detections,
    chain_boxes,
    fast_path_inputs,
    randomise_norms,
    run_batches,
    synthetic_input,
)


def _random_boxes(g: torch.Generator, n: int) -> torch.Tensor:
    """Clusters of jittered boxes, as a detector's candidates: overlaps at every threshold
    tested, with chains of suppression."""
    centers = torch.rand(n // 6 + 1, 2, generator=g) * 80
    xy = centers.repeat_interleave(6, dim=0)[:n] + torch.randn(n, 2, generator=g) * 3
    wh = torch.rand(n, 2, generator=g) * 10 + 20
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("thresh", [0.3, 0.5, 0.7])
def test_greedy_nms_mask_keeps_what_batched_nms_keeps(groups, thresh):
    g = torch.Generator().manual_seed(int(thresh * 10) + groups)
    for _ in range(5):
        n = 120
        boxes = _random_boxes(g, n)
        scores = torch.randperm(n, generator=g).float() / n  # distinct: no ties
        idxs = torch.randint(0, groups, (n,), generator=g)
        expected = torch.zeros(n, dtype=torch.bool)
        expected[batched_nms(boxes, scores, idxs, thresh)] = True
        keep, settled = greedy_nms_mask(
            boxes[None], scores[None], idxs if groups > 1 else None, thresh, rounds=n
        )
        assert keep.shape == (1, n) and settled.tolist() == [True]
        assert torch.equal(keep[0], expected)
        # Something is suppressed, so the test can tell greedy NMS from keeping everything.
        assert 0 < int(expected.sum()) < n


def test_greedy_nms_mask_differs_from_fast_nms_where_greedy_does():
    """A chain a > b > c where a suppresses b, b would suppress c: greedy keeps c (b is gone);
    plain "Fast NMS" (suppressed by any higher-scored box) would drop it."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, settled = greedy_nms_mask(boxes[None], scores[None], None, 0.3, rounds=3)
    assert keep[0].tolist() == [True, False, True] and settled.tolist() == [True]
    assert sorted(batched_nms(boxes, scores, torch.zeros(3), 0.3).tolist()) == [0, 2]


def test_greedy_nms_mask_says_when_its_rounds_were_too_few():
    n = 12
    boxes, scores = chain_boxes(n)[None], torch.linspace(1, 0.1, n)[None]
    expected = [i % 2 == 0 for i in range(n)]
    keep, settled = greedy_nms_mask(boxes, scores, None, 0.3, rounds=n + 1)
    assert keep[0].tolist() == expected and settled.tolist() == [True]
    keep, settled = greedy_nms_mask(boxes, scores, None, 0.3, rounds=n // 2)
    assert settled.tolist() == [False] and keep[0].tolist() != expected
    # Each set of a batch settles on its own: the chain beside boxes that do not overlap.
    apart = chain_boxes(n)
    apart[:, [0, 2]] += torch.arange(n, dtype=torch.float32)[:, None] * 15  # 20 px apart
    keep, settled = greedy_nms_mask(
        torch.stack([boxes[0], apart]), scores.expand(2, -1), None, 0.3, rounds=n // 2
    )
    assert settled.tolist() == [False, True] and keep[1].all()
    with pytest.raises(ValueError, match="STATIC_NMS_ROUNDS"):
        greedy_nms_mask(boxes, scores, None, 0.3, rounds=0)


def test_greedy_nms_mask_settles_as_far_as_the_boxes_its_caller_uses():
    """The chain's first two kept boxes (0 and 2) are final after 3 rounds, long before the
    whole chain is: with ``needed=2`` the set counts as settled there, and those two are
    greedy NMS's first two."""
    n = 12
    boxes, scores = chain_boxes(n)[None], torch.linspace(1, 0.1, n)[None]
    keep, settled = greedy_nms_mask(boxes, scores, None, 0.3, rounds=4, needed=2)
    assert settled.tolist() == [True]
    assert keep[0].nonzero()[:2, 0].tolist() == [0, 2]
    assert not greedy_nms_mask(boxes, scores, None, 0.3, rounds=4)[1].any()
    assert not greedy_nms_mask(boxes, scores, None, 0.3, rounds=1, needed=2)[1].any()
    # More boxes needed than greedy keeps: the whole set must settle.
    assert not greedy_nms_mask(boxes, scores, None, 0.3, rounds=n // 2, needed=n)[1].any()
    assert greedy_nms_mask(boxes, scores, None, 0.3, rounds=n + 1, needed=n)[1].all()


def test_greedy_nms_mask_sets_of_a_batch_are_independent():
    g = torch.Generator().manual_seed(3)
    boxes = torch.stack([_random_boxes(g, 40) for _ in range(3)])
    scores = torch.stack([torch.randperm(40, generator=g).float() for _ in range(3)])
    keep, settled = greedy_nms_mask(boxes, scores, None, 0.5, rounds=40)
    assert settled.all()
    for b, s, k in zip(boxes, scores, keep):
        assert torch.equal(k, greedy_nms_mask(b[None], s[None], None, 0.5, rounds=40)[0][0])


@pytest.mark.parametrize("path", ["reference", "sync_free", "bfloat16"])
def test_static_shapes_give_the_same_detections_and_embeddings(cfg, path):
    """Also under bf16 autocast, whose coarse scores tie often: tied detections come in the
    same order as torchvision's NMS gives them on the CPU."""
    if path == "sync_free":
        cfg.MODEL.PROPOSAL_GENERATOR.NAME = "SyncFreeRPN"
        cfg.MODEL.ROI_HEADS.SYNC_FREE_INFERENCE = True
    if path == "bfloat16":
        cfg.TEST.AMP.ENABLED = True
        cfg.TEST.AMP.DTYPE = "bfloat16"
    model = randomise_norms(build_model(cfg))
    inputs = fast_path_inputs()
    ref = run_batches(model, inputs, batch=2)
    model.static_shapes = True
    new = run_batches(model, inputs, batch=2)
    assert_same_detections(ref, new)
    with torch.no_grad():  # the static path answered: no batch fell back to the dynamic one
        assert model.static_gallery_forward(torch.stack([inputs[0]["image"]] * 2))["settled"].all()
    if path == "bfloat16":
        assert any(len(set(r.scores.tolist())) < len(r) for r in ref)  # there are ties
    for a, b in zip(ref, new):
        assert torch.equal(a.pred_classes, b.pred_classes)
        assert torch.allclose(a.scores, b.scores, atol=1e-6)
    # Without post-processing: the input frame, the same rows.
    with torch.no_grad():
        raw = model.inference(inputs[:1], do_postprocess=False)[0]
    assert len(raw) == len(new[0]) and torch.isfinite(raw.scores).all()


def test_a_batch_whose_nms_did_not_settle_is_recomputed_on_the_dynamic_path(cfg):
    """One round settles no NMS with overlapping candidates: the static forward says so, and
    the model's results are still the reference path's, to the bit."""
    model = randomise_norms(build_model(cfg))
    inputs = fast_path_inputs()
    ref = run_batches(model, inputs, batch=2)
    cfg.TEST.FAST_PATH.STATIC_SHAPES = True
    cfg.TEST.FAST_PATH.STATIC_NMS_ROUNDS = 1
    static = build_model(cfg)
    static.load_state_dict(model.state_dict())
    static.eval()
    images = torch.stack([x["image"] for x in inputs[:2]])
    with torch.no_grad():
        assert not static.static_gallery_forward(images)["settled"].any()
    new = run_batches(static, inputs, batch=2)
    for a, b in zip(ref, new):
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.equal(a.pred_embeddings, b.pred_embeddings)
    cfg.TEST.FAST_PATH.STATIC_NMS_ROUNDS = 0
    with pytest.raises(ValueError, match="STATIC_NMS_ROUNDS must be at least 1"):
        build_model(cfg)


def test_static_shapes_key_builds_the_static_model(cfg):
    cfg.TEST.FAST_PATH.STATIC_SHAPES = True
    assert build_model(cfg).static_shapes
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "PrecomputedProposals"
    with pytest.raises(ValueError, match="needs an RPN"):
        build_model(cfg)


def test_the_whole_gallery_forward_compiles_into_one_graph(cfg):
    """fullgraph=True fails on any graph break (a host read such as ``.item()`` / ``nonzero`` /
    ``.tolist()``, or a data-dependent shape); the compiled forward returns the eager numbers."""
    cfg.TEST.DETECTIONS_PER_IMAGE = 8
    cfg.TEST.FAST_PATH.STATIC_SHAPES = True
    model = randomise_norms(build_model(cfg))
    images = torch.stack([synthetic_input(96, 64, seed=i)["image"] for i in range(2)])
    torch._dynamo.reset()
    compiled = torch.compile(model.static_gallery_forward, fullgraph=True, backend="eager")
    with torch.no_grad():
        eager = model.static_gallery_forward(images)
        out = compiled(images)
    assert out["pred_boxes"].shape == (2, 8, 4) and out["pred_embeddings"].shape[:2] == (2, 8)
    assert out["valid"].any(dim=1).all() and out["settled"].all()
    assert torch.equal(out["valid"], eager["valid"])
    assert torch.equal(out["pred_classes"], eager["pred_classes"])
    v = eager["valid"]
    assert (out["pred_boxes"][v] - eager["pred_boxes"][v]).abs().max() <= 0.5
    assert torch.allclose(out["scores"][v], eager["scores"][v], atol=1e-5)
    cos = (out["pred_embeddings"][v] * eager["pred_embeddings"][v]).sum(dim=1)
    assert cos.min() >= 0.9999
    assert not out["pred_embeddings"][~v].any() and (out["scores"][~v] == -torch.inf).all()
    # And the eager static forward is the model's usual gallery inference.
    model.static_shapes = False
    ref = run_batches(model, [{"image": im, "height": 96, "width": 64} for im in images], batch=2)
    for r, boxes, valid in zip(ref, eager["pred_boxes"], v):
        assert torch.allclose(r.pred_boxes.tensor, boxes[valid], atol=1e-4)


def test_compile_with_static_shapes_compiles_the_whole_gallery_forward(cfg):
    """``TEST.FAST_PATH.COMPILE`` on a static-shape model wraps the whole gallery forward
    (not called here: inductor takes minutes on it; the eager-backend test above proves it is
    one graph), and leaves the base nets alone."""
    cfg.TEST.FAST_PATH.STATIC_SHAPES = True
    model = build_model(cfg)
    cfg.TEST.FAST_PATH.COMPILE = "reduce-overhead"
    fast = prepare_inference_model(model, cfg)
    wrapped = fast.static_gallery_forward
    assert getattr(wrapped, "_torchdynamo_orig_callable", None) is not None
    assert wrapped._torchdynamo_orig_callable.__self__ is fast
    assert fast.backbone._compiled_call_impl is None
    assert "static_gallery_forward" not in vars(model)  # the given model is never touched
