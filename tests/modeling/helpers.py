"""Helpers for the modeling tests."""

from __future__ import annotations

import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.structures import Boxes, Instances
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def synthetic_input(h: int = 96, w: int = 64, seed: int = 0, n_persons: int = 3):
    """One training dict: a uint8 image with bright tall rectangles as 'persons' and their boxes."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 60, (3, h, w), dtype=torch.uint8, generator=g)
    boxes = []
    pw, ph = w // 5, h // 2
    for i in range(n_persons):
        x1 = 2 + i * (pw + 4)
        y1 = 4 + (i * 7) % (h - ph - 4)
        color = torch.tensor([(200 - 60 * i) % 256, (60 + 70 * i) % 256, 120], dtype=torch.uint8)[
            :, None, None
        ]
        img[:, y1 : y1 + ph, x1 : x1 + pw] = color
        boxes.append([x1, y1, x1 + pw, y1 + ph])
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.zeros(n_persons, dtype=torch.int64)
    ids = torch.arange(n_persons, dtype=torch.int64)
    if n_persons > 1:
        ids[-1] = -1  # the last person is unlabeled
    inst.gt_person_ids = ids
    return {"image": img, "height": h, "width": w, "image_id": f"s{seed}.jpg", "instances": inst}


#: Image sizes of the inference-equivalence tests (two alike: batches of equal and unequal sizes).
SIZES = [(96, 64), (96, 64), (80, 72), (112, 64)]


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters (a fresh model's are the
    identity, which would make folding trivially exact)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (_BatchNorm, FrozenBatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            if m.bias.requires_grad or isinstance(m, FrozenBatchNorm2d):
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def fast_path_inputs(sizes=SIZES):
    """Inference inputs of ``sizes`` (output size = input size)."""
    out = []
    for i, (h, w) in enumerate(sizes):
        d = synthetic_input(h=h, w=w, seed=i)
        out.append({"image": d["image"], "height": h, "width": w})
    return out


def run_batches(model, inputs, batch: int = 1):
    """The model's ``Instances`` for ``inputs``, ``batch`` images per forward."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            outs.extend(model(inputs[i : i + batch]))
    return [o["instances"] for o in outs]


def assert_same_detections(ref, new, min_cos: float = 0.9999):
    """Same boxes (within half a pixel) and embeddings (cosine >= ``min_cos``), image by image."""
    for a, b in zip(ref, new):
        assert len(a) == len(b) > 0
        diff = (a.pred_boxes.tensor - b.pred_boxes.tensor).abs().max().item()
        assert diff <= 0.5, f"boxes moved by {diff:.3f} px"
        cos = (a.pred_embeddings * b.pred_embeddings).sum(dim=1)
        assert cos.min().item() >= min_cos, cos.min().item()


def rescaled_inputs(sizes=SIZES):
    """Inference inputs of ``sizes`` whose output size differs (post-processing rescales)."""
    out = []
    for i, (h, w) in enumerate(sizes):
        d = synthetic_input(h=h, w=w, seed=i)
        # A different output size exercises detector_postprocess's rescaling.
        out.append({"image": d["image"], "height": h * 2, "width": w * 3 // 2})
    return out


def run_inference(model, inputs, batch: int, do_postprocess: bool = True):
    """``model.inference`` over ``inputs``, ``batch`` images per call."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            outs.extend(model.inference(inputs[i : i + batch], do_postprocess=do_postprocess))
    return [o["instances"] for o in outs] if do_postprocess else outs


def assert_same_instances(ref, new):
    """Same fields, classes, boxes, scores and embeddings up to float rounding."""
    assert len(ref) == len(new)
    for a, b in zip(ref, new):
        assert a.image_size == b.image_size
        assert list(a.get_fields()) == list(b.get_fields())
        assert len(a) == len(b), (len(a), len(b))
        assert torch.equal(a.pred_classes, b.pred_classes)
        diff = (a.pred_boxes.tensor - b.pred_boxes.tensor).abs().max().item() if len(a) else 0.0
        assert diff <= 0.5, f"boxes moved by {diff:.4f} px"
        torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor, rtol=0, atol=1e-4)
        torch.testing.assert_close(b.scores, a.scores, rtol=0, atol=1e-6)
        torch.testing.assert_close(b.pred_embeddings, a.pred_embeddings, rtol=0, atol=1e-5)


def chain_boxes(n: int) -> torch.Tensor:
    """``n`` boxes in a row, each overlapping only its neighbours (IoU 1/3): with falling
    scores, greedy NMS at 0.3 keeps every other box, and each round of the static-shape NMS
    settles one more box."""
    x = torch.arange(n, dtype=torch.float32) * 5
    return torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)
