"""RoI Align (``aligned=True``) as two small matrix products per RoI: a fast CPU path for the ID
poolers.

Why: torchvision's CPU RoI Align visits every (channel, bin, sample) with four scattered reads;
for the identification branch (RoIs of 64x32 on the 256-channel stride-4 map for MRFP, 32x16 on
res3) that is ~0.1 s per 10 persons at 960x640 on two cores, about as much as the MRFP neck
itself, and its backward is single-threaded. Bilinear sampling on a regular grid, averaged over
the grid, is separable: for one RoI and channel ``c``,

    out[c] = Wy @ F[c, y0:y1, x0:x1] @ Wx^T

with ``Wy`` (out_h x rows) and ``Wx`` (out_w x cols) holding the bilinear weights summed over the
sampling points of each bin (divided by the grid size). The weights reproduce torchvision's
kernel exactly (sample positions, the ``[-1, size]`` validity test, clamping at 0 and at the
last row / column), so results agree to float rounding. On CUDA, for an adaptive sampling
ratio (0), or inside ``torch.compile`` (the per-RoI bounds are host values), torchvision's kernel
is used. The backward (to the features only; boxes take no gradient, as in torchvision) is the
transposed products, accumulated in place into one gradient map: autograd through per-RoI slices
would build a full-size gradient per RoI.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from detectron2.structures import Boxes
from torch import nn
from torchvision.ops import roi_align

__all__ = ["SeparableRoIAlign"]


def _axis_weights(
    start: torch.Tensor, length: torch.Tensor, out: int, grid: int, size: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-RoI interpolation matrices along one axis, as torchvision computes the samples.

    Returns ``(W, lo, hi)``: ``W`` (R, out, size), and the first / last index with a non-zero
    weight per RoI (``hi < lo`` when no sample falls on the map).
    """
    r = start.shape[0]
    dev, dt = start.device, start.dtype
    bin_size = (length / out)[:, None, None]
    p = torch.arange(out, device=dev, dtype=dt)[None, :, None]
    i = torch.arange(grid, device=dev, dtype=dt)[None, None, :]
    c = start[:, None, None] + p * bin_size + (i + 0.5) * bin_size / grid  # (R, out, grid)
    valid = (c >= -1.0) & (c <= size)
    c = c.clamp(min=0)
    low = c.floor().to(torch.int64)
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    c = torch.where(edge, low.to(dt), c)
    frac = c - low.to(dt)
    vw = valid.to(dt) / grid
    w = torch.zeros(r, out, size, device=dev, dtype=dt)
    w.scatter_add_(2, low, (1.0 - frac) * vw)
    w.scatter_add_(2, high, frac * vw)
    lo = torch.where(valid, low, torch.full_like(low, size)).amin(dim=(1, 2))
    hi = torch.where(valid, high, torch.full_like(high, -1)).amax(dim=(1, 2))
    return w, lo, hi


def _pool(
    feature: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor, bounds: List[List[int]]
) -> torch.Tensor:
    """``Wy @ crop @ Wx^T`` per RoI, with the cheaper order of the two products."""
    c = feature.shape[1]
    oh, ow = wy.shape[1], wx.shape[1]
    outs = []
    for r, (b, y0, y1, x0, x1) in enumerate(bounds):
        if y1 < y0 or x1 < x0:
            outs.append(feature.new_zeros((c, oh, ow)))
            continue
        crop = feature[b, :, y0 : y1 + 1, x0 : x1 + 1]  # (C, h, w)
        a, bt = wy[r, :, y0 : y1 + 1], wx[r, :, x0 : x1 + 1].t()  # (oh, h), (w, ow)
        h, w = crop.shape[1:]
        if oh * w * (h + ow) <= h * ow * (w + oh):
            outs.append(torch.matmul(torch.matmul(a, crop), bt))
        else:
            outs.append(torch.matmul(a, torch.matmul(crop, bt)))
    return torch.stack(outs)


class _SeparableRoIAlignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feature, wy, wx, bounds):  # type: ignore[override]
        ctx.save_for_backward(wy, wx)
        ctx.bounds, ctx.shape = bounds, feature.shape
        return _pool(feature, wy, wx, bounds)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        wy, wx = ctx.saved_tensors
        grad = grad_out.new_zeros(ctx.shape)
        for r, (b, y0, y1, x0, x1) in enumerate(ctx.bounds):
            if y1 < y0 or x1 < x0:
                continue
            a, bt = wy[r, :, y0 : y1 + 1], wx[r, :, x0 : x1 + 1].t()
            grad[b, :, y0 : y1 + 1, x0 : x1 + 1] += torch.matmul(
                torch.matmul(a.t(), grad_out[r]), bt.t()
            )
        return grad, None, None, None


class SeparableRoIAlign(nn.Module):
    """Single-level RoI Align with ``aligned=True``; ``ROIPooler``'s call signature.

    ``forward([feature], box_lists)`` -> ``(R, C, out_h, out_w)``, boxes in input-image pixels
    (scaled by ``spatial_scale``), RoIs in the order of ``box_lists``.
    """

    def __init__(self, output_size: Sequence[int], spatial_scale: float, sampling_ratio: int):
        super().__init__()
        self.output_size = tuple(int(v) for v in output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        assert len(x) == 1, "SeparableRoIAlign pools from one feature map"
        feature = x[0]
        boxes = torch.cat([b.tensor for b in box_lists]).to(feature.dtype)
        index = torch.cat(
            [
                torch.full((len(b),), i, dtype=torch.int64, device=boxes.device)
                for i, b in enumerate(box_lists)
            ]
        )
        oh, ow = self.output_size
        if boxes.shape[0] == 0:
            return feature.new_zeros((0, feature.shape[1], oh, ow))
        if feature.is_cuda or self.sampling_ratio <= 0 or torch.compiler.is_compiling():
            rois = torch.cat([index[:, None].to(boxes.dtype), boxes], dim=1)
            return roi_align(
                feature, rois, self.output_size, self.spatial_scale, self.sampling_ratio, True
            )
        return self._forward_separable(feature, boxes, index)

    def _forward_separable(
        self, feature: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        _, c, height, width = feature.shape
        oh, ow = self.output_size
        s, g = self.spatial_scale, self.sampling_ratio
        x1, y1, x2, y2 = (boxes[:, k] * s - 0.5 for k in range(4))
        wy, ylo, yhi = _axis_weights(y1, y2 - y1, oh, g, height)
        wx, xlo, xhi = _axis_weights(x1, x2 - x1, ow, g, width)
        bounds = torch.stack([index, ylo, yhi, xlo, xhi], dim=1).tolist()
        return _SeparableRoIAlignFunction.apply(feature, wy.detach(), wx.detach(), bounds)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}"
        )
