"""Helpers for the modeling tests."""

from __future__ import annotations

import torch
from detectron2.structures import Boxes, Instances


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
