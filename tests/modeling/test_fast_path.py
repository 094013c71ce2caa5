"""The inference fast path is exact to the reference path: folded BN, channels-last, batching,
and reduced-precision autocast (bf16 on the CPU) on the tiny model with random BN statistics.

Exactness: the same detections (boxes within 0.5 px, in the same order) and embeddings with
cosine >= 0.9999; for bf16, cosine >= 0.999 and the same top-1 gallery match for every query.
"""

from __future__ import annotations

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from stl_search.modeling.backbone.resnet_ibn import IBN
from stl_search.modeling.fast_path import fold_batchnorm, prepare_inference_model

from .helpers import (
    assert_same_detections,
    fast_path_inputs,
    randomise_norms,
    run_batches,
)


@pytest.fixture
def model(cfg):
    return randomise_norms(build_model(cfg))


@pytest.mark.parametrize("freeze_at", [0, 5])
def test_folded_batchnorm_gives_the_same_detections_and_embeddings(cfg, freeze_at):
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at  # 5: the base nets' norms are FrozenBatchNorm2d
    model = randomise_norms(build_model(cfg))
    cfg.TEST.FAST_PATH.FOLD_BN = True
    fast = prepare_inference_model(model, cfg)
    assert fast is not model
    norms = [m for m in fast.modules() if isinstance(m, (_BatchNorm, FrozenBatchNorm2d))]
    # Only the BNNeck (after pooling, no convolution before it) is left.
    assert [type(m).__name__ for m in norms] == ["BNNeck"]
    assert all(isinstance(m.BN, nn.Identity) for m in fast.modules() if isinstance(m, IBN))
    if freeze_at:
        assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.modules())
    inputs = fast_path_inputs()
    assert_same_detections(run_batches(model, inputs), run_batches(fast, inputs))
    # The reference model is untouched (a copy was folded).
    assert sum(isinstance(m, _BatchNorm) for m in model.modules()) > 1


def test_fold_counts_and_skips_norms_in_training_mode(cfg):
    model = build_model(cfg)
    conv_norms = sum(
        isinstance(m, _BatchNorm) for m in model.modules() if type(m).__name__ != "BNNeck"
    )
    assert fold_batchnorm(model.train()) == 0  # batch statistics: nothing to fold
    assert fold_batchnorm(model.eval()) == conv_norms > 0


def test_channels_last_gives_the_same_detections_and_embeddings(cfg, model):
    cfg.TEST.FAST_PATH.CHANNELS_LAST = True
    fast = prepare_inference_model(model, cfg)
    assert fast.backbone.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    inputs = fast_path_inputs()
    assert_same_detections(run_batches(model, inputs), run_batches(fast, inputs))


def test_every_piece_together(cfg, model):
    cfg.TEST.FAST_PATH.FOLD_BN = True
    cfg.TEST.FAST_PATH.CHANNELS_LAST = True
    fast = prepare_inference_model(model, cfg)
    inputs = fast_path_inputs()
    assert_same_detections(run_batches(model, inputs), run_batches(fast, inputs))


def test_no_piece_on_returns_the_model_itself_in_its_mode(cfg, model):
    assert prepare_inference_model(model.train(), cfg) is model and model.training


def test_one_door_for_plain_ddp_and_prepared_models(cfg, model, tmp_path):
    """A DDP model is prepared as the module it wraps, a prepared model (the fast copy, or an
    export that says so) is taken as it is, and anything else is refused by type."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        assert prepare_inference_model(ddp, cfg) is model
        cfg.TEST.FAST_PATH.FOLD_BN = True
        fast = prepare_inference_model(ddp, cfg)
    finally:
        torch.distributed.destroy_process_group()
    assert fast is not model and fast.inference_prepared
    assert prepare_inference_model(fast, cfg) is fast  # folded once, never twice

    class Prepared:  # what an exported model declares
        inference_prepared = True
        checked = []

        def check_config(self, cfg):
            self.checked.append(cfg)

    exported = Prepared()
    assert prepare_inference_model(exported, cfg) is exported and exported.checked == [cfg]
    with pytest.raises(TypeError, match="cannot prepare a object"):
        prepare_inference_model(object(), cfg)


@pytest.mark.parametrize("batch", [2, 4])
def test_batched_inference_equals_one_image_at_a_time(model, batch):
    """Images of equal and of different sizes in one batch: same detections, same order."""
    inputs = fast_path_inputs()
    assert_same_detections(run_batches(model, inputs, 1), run_batches(model, inputs, batch))


def test_batched_query_mode_equals_one_query_at_a_time(model):
    inputs = fast_path_inputs()
    dets = run_batches(model, inputs)
    queries = [dict(x, query_boxes=Boxes(d.pred_boxes.tensor[:2])) for x, d in zip(inputs, dets)]
    with torch.no_grad():
        one = [model([q])[0]["query_embedding"] for q in queries]
        batched = [o["query_embedding"] for o in model(queries)]
    for a, b in zip(one, batched):
        assert (a * b).sum(dim=1).min().item() >= 0.9999


def _gallery(n_ids: int = 8, n_frames: int = 8, h: int = 96, w: int = 64):
    """Query-mode inputs of ``n_frames`` frames, each with 3 persons (tall rectangles of one colour
    per identity, identities ``k, k+1, k+2`` in frame ``k``), and the identity of each box."""
    g = torch.Generator().manual_seed(1)
    colors = torch.randint(0, 256, (n_ids, 3), generator=g, dtype=torch.uint8)
    frames, ids = [], []
    for k in range(n_frames):
        img = torch.randint(0, 60, (3, h, w), dtype=torch.uint8, generator=g)
        boxes = []
        for j in range(3):
            pid = (k + j) % n_ids
            x1, y1 = 2 + j * 20, 4 + int(torch.randint(0, h - 52, (1,), generator=g))
            img[:, y1 : y1 + 48, x1 : x1 + 14] = colors[pid][:, None, None]
            boxes.append([x1, y1, x1 + 14, y1 + 48])
            ids.append(pid)
        frames.append({"image": img, "query_boxes": Boxes(torch.tensor(boxes).float())})
    return frames, torch.tensor(ids)


def _amp_copy(cfg, model, dtype: str):
    cfg.TEST.AMP.ENABLED = True
    cfg.TEST.AMP.DTYPE = dtype
    amp = build_model(cfg)
    amp.load_state_dict(model.state_dict())
    assert amp.inference_amp_dtype == dtype
    return amp.eval()


def _embed(model, frames):
    with torch.no_grad():
        return torch.cat([model([f])[0]["query_embedding"] for f in frames])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_embeddings_within_cosine_0999_in_float32(cfg, model, dtype):
    amp = _amp_copy(cfg, model, dtype)
    frames, _ = _gallery()
    ref, low = _embed(model, frames), _embed(amp, frames)
    assert low.dtype == torch.float32
    cos = (ref * low).sum(dim=1)
    assert cos.min().item() >= 0.999, cos.min().item()
    with torch.no_grad():
        detections = run_batches(amp, fast_path_inputs())
    assert all(
        d.pred_embeddings.dtype == d.pred_boxes.tensor.dtype == torch.float32 for d in detections
    )


def test_float16_autocast_keeps_the_top1_match_outside_near_ties(cfg, model):
    """Every person's best match among the other frames' persons is unchanged, except where the
    float32 top-1 margin is below the largest change of any similarity (a near-tie).

    A random-weight model's embeddings share one dominant direction (any two persons have cosine
    > 0.99): the gallery would not rank anything. The BNNeck's statistics are therefore set from
    the gallery's own pooled features (as trained statistics would be), which spreads the
    embeddings out and also magnifies the rounding: on this model float16 moves similarities by
    up to ~0.02, so near-ties are exempt and most queries must not be near-ties. bfloat16 moves
    them by up to ~0.16, more than every top-1 margin of this random model: it is checked by the
    cosine test only (a trained model's margins are what would make a bfloat16 ranking check
    meaningful).
    """
    frames, _ = _gallery()
    pooled = []
    bnneck = model.roi_heads.id_head.bnneck
    handle = bnneck.register_forward_hook(lambda m, args, out: pooled.append(args[0]))
    _embed(model, frames)
    handle.remove()
    x = torch.cat(pooled)
    bnneck.running_mean.copy_(x.mean(0))
    bnneck.running_var.copy_(x.var(0) + 1e-6)
    ref = _embed(model, frames)
    low = _embed(_amp_copy(cfg, model, "float16"), frames)
    frame_of = torch.arange(len(frames)).repeat_interleave(3)
    other = frame_of[:, None] != frame_of[None, :]
    sim_ref = (ref @ ref.T).masked_fill(~other, -2)
    sim_low = (low @ low.T).masked_fill(~other, -2)
    drift = (sim_ref - sim_low)[other].abs().max().item()
    margin = sim_ref.topk(2, dim=1).values.diff(dim=1).abs().squeeze(1)
    clear = margin > drift
    assert clear.float().mean().item() >= 0.5, (drift, margin)
    assert torch.equal(sim_ref.argmax(dim=1)[clear], sim_low.argmax(dim=1)[clear])


def test_bad_amp_dtype_is_named(cfg):
    cfg.TEST.AMP.ENABLED = True
    cfg.TEST.AMP.DTYPE = "float8"
    with pytest.raises(ValueError, match="TEST.AMP.DTYPE"):
        build_model(cfg)
