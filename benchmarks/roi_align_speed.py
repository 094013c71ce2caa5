#!/usr/bin/env python
"""The identification poolers' RoI Align: ``SeparableRoIAlign`` against torchvision's CPU kernel.

    python benchmarks/roi_align_speed.py [--threads 2] [--persons 10] [--iters 20]

The two RoI Aligns of the identification branch at 960x640 (ResNet-50 widths): 64x32 on the
256-channel stride-4 ``res2`` (MRFP's low level) and 32x16 on the 512-channel stride-8 ``res3``,
for ``--persons`` person boxes, sampling ratio 2, aligned. Forward alone (inference) and forward +
backward (training), timed interleaved in one run (``inference_speed.interleaved``); the ratio
is torchvision / separable. Also prints the largest difference of the outputs and input
gradients (float rounding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Callable

import torch
from torchvision.ops import roi_align

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.structures import Boxes  # noqa: E402
from timing import interleaved  # noqa: E402  (this folder is on sys.path)

from stl_search.modeling.separable_roi_align import SeparableRoIAlign  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402

LEVELS = (("res2 -> 64x32", 256, 4, (64, 32)), ("res3 -> 32x16", 512, 8, (32, 16)))


def person_boxes(n: int, width: int, height: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    h = torch.rand(n, generator=g) * 250 + 100  # persons 100-350 px tall, 2.5:1
    w = h / 2.5
    x = torch.rand(n, generator=g) * (width - w)
    y = torch.rand(n, generator=g) * (height - h)
    return torch.stack([x, y, x + w, y + h], 1)


def forward_backward(fn: Callable[[torch.Tensor], torch.Tensor], feature: torch.Tensor):
    """``(output, input gradient)`` of ``fn`` with a gradient of ones (also under ``no_grad``)."""
    with torch.enable_grad():
        f = feature.detach().requires_grad_()
        y = fn(f)
        y.backward(torch.ones_like(y))
    return y.detach(), f.grad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--persons", type=int, default=10, help="boxes per image")
    parser.add_argument("--iters", type=int, default=20, help="interleaved rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = 960, 640
    boxes = person_boxes(args.persons, width, height)
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1)
    print(
        f"CPU, {args.threads} threads; {args.persons} persons at {width}x{height}; "
        f"medians of {args.iters} interleaved rounds"
    )
    for name, channels, stride, out in LEVELS:
        feature = torch.randn(1, channels, height // stride, width // stride)
        separable = SeparableRoIAlign(out, 1.0 / stride, 2)
        fns = {
            "torchvision": lambda f: roi_align(f, rois, out, 1.0 / stride, 2, True),
            "separable": lambda f: separable([f], [Boxes(boxes)]),
        }
        results = {key: forward_backward(fn, feature) for key, fn in fns.items()}
        (y_tv, g_tv), (y_sep, g_sep) = results["torchvision"], results["separable"]
        timed = {}
        for key, fn in fns.items():
            timed[f"{key} forward"] = lambda fn=fn: fn(feature)
            timed[f"{key} forward+backward"] = lambda fn=fn: forward_backward(fn, feature)
        runs = interleaved(timed, "cpu", warmup=2, rounds=args.iters)
        print(
            f"\n{name} ({channels} channels): max |diff| output {(y_tv - y_sep).abs().max():.1e}, "
            f"input gradient {(g_tv - g_sep).abs().max():.1e}"
        )
        for mode in ("forward", "forward+backward"):
            tv, sp = (
                statistics.median(wall for wall, _ in runs[f"{key} {mode}"])
                for key in ("torchvision", "separable")
            )
            print(
                f"  {mode:17s} torchvision {1000 * tv:7.1f} ms   "
                f"separable {1000 * sp:7.1f} ms   ratio {tv / sp:5.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
