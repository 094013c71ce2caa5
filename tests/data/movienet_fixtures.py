"""A tiny MovieNet-PS copy in its distributed format (CUHK-SYSU's files, with ``pool_<G>.mat`` and
``Train_app<N>.mat`` rows of three cells), written with the CUHK-SYSU fixture writers, and the
values the loader tests expect."""

from __future__ import annotations

import os

import numpy as np
from scipy.io import savemat

from .fixtures import _protocol, box, cell, write_image, write_images_mat

SIZES = {
    "m1.jpg": (100, 120),
    "m2.jpg": (90, 100),
    "m3.jpg": (80, 100),
    "m4.jpg": (100, 110),
    "m5.jpg": (80, 90),
}
IMAGE_BOXES = {
    "m1.jpg": [(10, 20, 30, 60), (50, 10, 20, 40), (70, 5, 0, 30)],
    "m2.jpg": [(5, 5, 25, 50), (40, 10, 30, 60)],
    "m3.jpg": [(8, 8, 20, 40)],
    "m4.jpg": [(10, 10, 20, 40), (60, 20, 25, 50)],
    "m5.jpg": [(30, 10, 20, 45)],
}
# Train_app<N>: (first cell, [(image, [x, y, w, h])]) per identity row, in file order.
TRAIN_ROWS = {
    10: [
        ("p20", [("m1.jpg", (10, 20, 30, 60)), ("m2.jpg", (40, 10, 30, 60))]),
        ("p3", [("m1.jpg", (50, 10, 20, 40))]),
    ],
    30: [
        ("p20", [("m1.jpg", (10, 20, 30, 60)), ("m2.jpg", (40, 10, 30, 60))]),
        ("p3", [("m1.jpg", (50, 10, 20, 40))]),
        ("p7", [("m3.jpg", (8, 8, 20, 40))]),
    ],
}
EXPECTED_TRAIN_APP10 = {  # person_id: p3 -> 0, p20 -> 1; images in first-appearance order
    "m1.jpg": [([10, 20, 40, 80], 1, 20), ([50, 10, 70, 50], 0, 3)],
    "m2.jpg": [([5, 5, 30, 55], -1, -1), ([40, 10, 70, 70], 1, 20)],
}
EXPECTED_TRAIN_APP30 = {  # p3 -> 0, p7 -> 1, p20 -> 2
    "m1.jpg": [([10, 20, 40, 80], 2, 20), ([50, 10, 70, 50], 0, 3)],
    "m2.jpg": [([5, 5, 30, 55], -1, -1), ([40, 10, 70, 70], 2, 20)],
    "m3.jpg": [([8, 8, 28, 48], 1, 7)],
}
POOLS = {2000: ["m4.jpg", "m5.jpg"], 4000: ["m5.jpg", "m4.jpg"]}
# TestG<size>: query identity, image, query box (XYXY), gallery [(image, XYXY or None)].
PROTOCOLS = {
    2000: [
        (100, "m4.jpg", [10, 10, 30, 50], [("m5.jpg", [30, 10, 50, 55]), ("m4.jpg", None)]),
        (200, "m4.jpg", [60, 20, 85, 70], [("m5.jpg", None)]),
    ],
    4000: [(200, "m4.jpg", [60, 20, 85, 70], [("m5.jpg", [30, 10, 50, 55]), ("m4.jpg", None)])],
}
EXPECTED_GALLERY = {
    2000: {
        "m4.jpg": [([10, 10, 30, 50], -1, 100), ([60, 20, 85, 70], -1, 200)],
        "m5.jpg": [([30, 10, 50, 55], -1, 100)],
    },
    4000: {
        "m5.jpg": [([30, 10, 50, 55], -1, 200)],
        "m4.jpg": [([10, 10, 30, 50], -1, -1), ([60, 20, 85, 70], -1, 200)],
    },
}


def train_cell(rows) -> np.ndarray:
    """``Train``: one row of three cells per identity (name, number of appearances, a k x 3 cell
    of (image name, [x y w h], hard flag))."""
    out = np.empty((len(rows), 3), dtype=object)
    for i, (first, apps) in enumerate(rows):
        scenes = np.empty((len(apps), 3), dtype=object)
        for j, (name, b) in enumerate(apps):
            scenes[j] = [name, box(*b), np.array([[0.0]])]
        out[i] = [first, np.array([[float(len(apps))]]), scenes]
    return out


def write_movienet_ps(root: str, image_subdir: str = "Image") -> str:
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        write_image(os.path.join(root, image_subdir, name), h, w, seed=30 + i)
    ann = os.path.join(root, "annotation")
    tt = os.path.join(ann, "test", "train_test")
    os.makedirs(tt, exist_ok=True)
    write_images_mat(ann, IMAGE_BOXES)
    for size, names in POOLS.items():
        savemat(os.path.join(ann, f"pool_{size}.mat"), {"pool": cell(names)})
    for n, rows in TRAIN_ROWS.items():
        savemat(os.path.join(tt, f"Train_app{n}.mat"), {"Train": train_cell(rows)})
    for size, entries in PROTOCOLS.items():
        savemat(os.path.join(tt, f"TestG{size}.mat"), {f"TestG{size}": _protocol(entries)})
    return root
