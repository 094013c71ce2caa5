"""SeqNet (Li & Ye, AAAI 2021; serend1p1ty/SeqNet) as a speed reference, imported from a local copy.

The copy is never part of this repository: pass its folder (``--seqnet DIR`` of
``benchmarks/inference_speed.py``). Its model is built with random weights (torchvision's
``resnet50(weights=None)`` instead of the ImageNet download its code asks for) and set up like
ours in the benchmark: the image is fed at its own size (``INPUT.MIN_SIZE`` / ``MAX_SIZE`` = the
image's sides, so its transform does not resize), and every image yields ``persons`` detections
(score threshold 0 and ``DETECTIONS_PER_IMAGE_TEST`` = ``persons``; its second stage can still
merge a few by NMS, the benchmark prints the count). Everything else is SeqNet's default
configuration (300 proposals through the res5 box head, 6000 pre-NMS).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from typing import Callable, List

import torch
import torchvision


@contextlib.contextmanager
def _on_path(folder: str):
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


@contextlib.contextmanager
def _random_init_resnets():
    """torchvision ResNet constructors that ignore ``pretrained=True`` (no download)."""
    resnet = torchvision.models.resnet
    saved = {name: getattr(resnet, name) for name in ("resnet50",)}

    def without_weights(fn):
        def build(*args, pretrained: bool = False, **kwargs):
            kwargs.pop("weights", None)
            return fn(weights=None, **kwargs)

        return build

    for name, fn in saved.items():
        setattr(resnet, name, without_weights(fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(resnet, name, fn)


def build_seqnet(folder: str, height: int, width: int, persons: int, device: str):
    """SeqNet's model from the copy in ``folder``, random weights, in eval mode on ``device``."""
    folder = os.path.abspath(folder)
    if not os.path.isfile(os.path.join(folder, "models", "seqnet.py")):
        raise FileNotFoundError(f"--seqnet {folder}: no models/seqnet.py (a SeqNet source copy?)")
    with _on_path(folder), _random_init_resnets():
        defaults = importlib.import_module("defaults")
        seqnet = importlib.import_module("models.seqnet")
        cfg = defaults.get_default_cfg()
        cfg.INPUT.MIN_SIZE = min(height, width)
        cfg.INPUT.MAX_SIZE = max(height, width)
        cfg.MODEL.ROI_HEAD.SCORE_THRESH_TEST = 0.0
        cfg.MODEL.ROI_HEAD.DETECTIONS_PER_IMAGE_TEST = persons
        torch.manual_seed(0)
        model = seqnet.SeqNet(cfg)
    return model.to(device).eval()


def seqnet_gallery_call(model, images: List[torch.Tensor]) -> Callable[[], object]:
    """A call running SeqNet's gallery inference on ``images`` (uint8 CHW; SeqNet takes 0-1
    floats, converted here once, outside the timed call)."""
    floats = [im.float() / 255.0 for im in images]
    return lambda: model(floats)
