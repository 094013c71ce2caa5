"""BoT-style augmentations of person crops for STL step 1 (paper 3.1 and 4.3; Luo et al. 2019).

Train: resize to ``REID.INPUT.SIZE`` → horizontal flip → zero padding + random crop back to the
size → normalisation with ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD`` → random erasing. Test: resize +
normalisation. Crops come in as uint8 ``C x H x W`` tensors in the channel order of
``INPUT.FORMAT`` (the order the person-search model sees, so that the transferred weights see
the same inputs), and are normalised with the same constants as the person-search model.

Every random draw takes an explicit ``torch.Generator``: the data loader seeds one per sample
from ``(seed, stream position)``, so a resumed run repeats the augmentation of an uninterrupted
run exactly. Random erasing fills with 0 after normalisation, i.e. with the mean pixel.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from detectron2.config import CfgNode

__all__ = ["ReIDTestTransform", "ReIDTrainTransform", "build_reid_transform", "random_erasing"]


def _uniform(g: Optional[torch.Generator], low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: Optional[torch.Generator], low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (both included)."""
    return int(torch.randint(low, high + 1, (), generator=g))


def random_erasing(
    image: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    area: Tuple[float, float] = (0.02, 0.4),
    min_aspect: float = 0.3,
    value: float = 0.0,
    attempts: int = 100,
) -> torch.Tensor:
    """Erase one random rectangle (Zhong et al. 2020): area fraction in ``area``, aspect ratio in
    ``[min_aspect, 1 / min_aspect]``; up to ``attempts`` draws until it fits. Returns a new
    tensor."""
    _, h, w = image.shape
    for _ in range(attempts):
        target = _uniform(generator, *area) * h * w
        aspect = _uniform(generator, min_aspect, 1.0 / min_aspect)
        eh = int(round(math.sqrt(target * aspect)))
        ew = int(round(math.sqrt(target / aspect)))
        if 0 < eh < h and 0 < ew < w:
            y, x = _randint(generator, 0, h - eh), _randint(generator, 0, w - ew)
            out = image.clone()
            out[:, y : y + eh, x : x + ew] = value
            return out
    return image


class _Normalize:
    def __init__(
        self, size: Sequence[int], pixel_mean: Sequence[float], pixel_std: Sequence[float]
    ):
        self.size = (int(size[0]), int(size[1]))
        self.mean = torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1)

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        if tuple(image.shape[-2:]) == self.size:
            return image
        return TF.resize(image, list(self.size), antialias=True)

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image.float() - self.mean) / self.std


class ReIDTestTransform(_Normalize):
    """uint8 ``C x H x W`` crop → normalised float crop of ``size`` (height, width)."""

    def __call__(
        self, image: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        return self._normalize(self._resize(image))


class ReIDTrainTransform(_Normalize):
    """BoT training augmentation; see the module docstring."""

    def __init__(
        self,
        size: Sequence[int],
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        flip_prob: float = 0.5,
        padding: int = 10,
        erase_prob: float = 0.5,
    ):
        super().__init__(size, pixel_mean, pixel_std)
        self.flip_prob, self.padding, self.erase_prob = (
            float(flip_prob),
            int(padding),
            float(erase_prob),
        )

    def __call__(
        self, image: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        image = self._resize(image)
        if _uniform(generator) < self.flip_prob:
            image = image.flip(-1)
        if self.padding > 0:
            p = self.padding
            padded = F.pad(image, (p, p, p, p), value=0)
            h, w = self.size
            y, x = _randint(generator, 0, 2 * p), _randint(generator, 0, 2 * p)
            image = padded[:, y : y + h, x : x + w]
        image = self._normalize(image)
        if _uniform(generator) < self.erase_prob:
            image = random_erasing(image, generator)
        return image


def build_reid_transform(cfg: CfgNode, is_train: bool) -> _Normalize:
    """The train or test transform of ``cfg`` (``REID.INPUT.*``, ``MODEL.PIXEL_MEAN/STD``)."""
    if len(cfg.MODEL.PIXEL_MEAN) != len(cfg.MODEL.PIXEL_STD):
        raise ValueError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD must have the same length")
    common = dict(
        size=cfg.REID.INPUT.SIZE, pixel_mean=cfg.MODEL.PIXEL_MEAN, pixel_std=cfg.MODEL.PIXEL_STD
    )
    if not is_train:
        return ReIDTestTransform(**common)
    i = cfg.REID.INPUT
    return ReIDTrainTransform(
        flip_prob=i.FLIP_PROB, padding=i.PADDING, erase_prob=i.ERASE_PROB, **common
    )
