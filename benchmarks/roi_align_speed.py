#!/usr/bin/env python
"""The identification poolers' RoI Align: ``SeparableRoIAlign`` against torchvision's CPU kernel.

    python benchmarks/roi_align_speed.py [--threads 2] [--persons 10] [--iters 20]

The two RoI Aligns of the identification branch at 960x640 (ResNet-50 widths): 64x32 on the
256-channel stride-4 ``res2`` (MRFP's low level) and 32x16 on the 512-channel stride-8 ``res3``,
for ``--persons`` person boxes, sampling ratio 2, aligned. Forward alone (inference) and forward +
backward (training), timed interleaved in one run; the ratio is torchvision / separable. Also
prints the largest difference of the outputs and input gradients (float rounding).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torchvision.ops import roi_align

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.structures import Boxes  # noqa: E402

from stl_search.modeling.separable_roi_align import SeparableRoIAlign  # noqa: E402

LEVELS = (("res2 -> 64x32", 256, 4, (64, 32)), ("res3 -> 32x16", 512, 8, (32, 16)))


def person_boxes(n: int, width: int, height: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    h = torch.rand(n, generator=g) * 250 + 100  # persons 100-350 px tall, 2.5:1
    w = h / 2.5
    x = torch.rand(n, generator=g) * (width - w)
    y = torch.rand(n, generator=g) * (height - h)
    return torch.stack([x, y, x + w, y + h], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--persons", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = 960, 640
    boxes = person_boxes(args.persons, width, height)
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1)
    print(f"CPU, {args.threads} threads; {args.persons} persons at {width}x{height}; "
          f"medians of {args.iters} interleaved rounds")
    for name, channels, stride, out in LEVELS:
        feature = torch.randn(1, channels, height // stride, width // stride)
        separable = SeparableRoIAlign(out, 1.0 / stride, 2)
        fns = {
            "torchvision": lambda f: roi_align(f, rois, out, 1.0 / stride, 2, True),
            "separable": lambda f: separable([f], [Boxes(boxes)]),
        }
        grads, outs = {}, {}
        for key, fn in fns.items():
            f = feature.clone().requires_grad_()
            y = fn(f)
            y.backward(torch.ones_like(y))
            outs[key], grads[key] = y.detach(), f.grad
        times = {(k, mode): [] for k in fns for mode in ("forward", "forward+backward")}
        for r in range(args.iters + 2):
            for key, fn in (fns.items() if r % 2 else reversed(list(fns.items()))):
                with torch.no_grad():
                    t = time.perf_counter()
                    fn(feature)
                    fwd = time.perf_counter() - t
                f = feature.detach().requires_grad_()
                t = time.perf_counter()
                y = fn(f)
                y.backward(torch.ones_like(y))
                both = time.perf_counter() - t
                if r >= 2:  # warm-up
                    times[(key, "forward")].append(fwd)
                    times[(key, "forward+backward")].append(both)
        print(f"\n{name} ({channels} channels): max |diff| output {(outs['torchvision'] - outs['separable']).abs().max():.1e}, "
              f"input gradient {(grads['torchvision'] - grads['separable']).abs().max():.1e}")
        for mode in ("forward", "forward+backward"):
            tv = statistics.median(times[("torchvision", mode)])
            sp = statistics.median(times[("separable", mode)])
            print(f"  {mode:17s} torchvision {1000 * tv:7.1f} ms   separable {1000 * sp:7.1f} ms   ratio {tv / sp:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
