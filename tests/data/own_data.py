"""A tiny "own" data set written by the tests: a few synthetic frames (persons drawn as two-colour
figures, one colour pair per identity) and their person-search JSON file (docs/own-data.md)."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np

HEIGHT, WIDTH = 96, 160
# identity -> (shirt, trousers) BGR colours; -1 is an unlabeled passer-by
COLOURS = {
    3: ((40, 40, 220), (200, 60, 20)),
    8: ((30, 200, 30), (40, 40, 40)),
    11: ((220, 200, 30), (30, 30, 160)),
    42: ((200, 30, 200), (160, 160, 160)),
    -1: ((128, 128, 128), (90, 90, 90)),
}
# (file, split, camera, [(x, y, w, h, identity)])
FRAMES: List[Tuple[str, str, int, List[Tuple[int, int, int, int, int]]]] = [
    (
        "cam1/000001.jpg",
        "train",
        1,
        [(10, 20, 22, 60, 3), (60, 25, 20, 55, 8), (120, 30, 18, 50, -1)],
    ),
    ("cam1/000002.jpg", "train", 1, [(30, 15, 24, 66, 3), (100, 20, 20, 60, 11)]),
    (
        "cam2/000001.jpg",
        "train",
        2,
        [(15, 25, 20, 56, 8), (70, 20, 22, 62, 11), (125, 35, 16, 44, 3)],
    ),
    ("cam2/000002.jpg", "train", 2, [(40, 22, 22, 60, 8), (90, 18, 24, 64, 3)]),
    (
        "cam1/000100.jpg",
        "gallery",
        1,
        [(20, 20, 22, 60, 42), (90, 25, 20, 56, 3), (130, 30, 18, 50, -1)],
    ),
    ("cam2/000100.jpg", "gallery", 2, [(50, 18, 24, 64, 42), (110, 22, 20, 60, 8)]),
    ("cam2/000101.jpg", "gallery", 2, [(10, 25, 20, 56, 3), (70, 20, 22, 60, 8)]),
    ("probe/042.jpg", "query", -1, [(60, 15, 26, 70, 42)]),
]
# (image index in FRAMES, its box index): the queries
QUERIES = [(7, 0), (4, 1), (5, 1)]


def draw_frame(path: str, persons, seed: int, size: Tuple[int, int] = (HEIGHT, WIDTH)) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 110, size=(*size, 3), dtype=np.uint8)
    for x, y, w, h, identity in persons:
        shirt, trousers = COLOURS[identity]
        cv2.rectangle(img, (x, y), (x + w - 1, y + h // 2), shirt, -1)
        cv2.rectangle(img, (x, y + h // 2), (x + w - 1, y + h - 1), trousers, -1)
        cv2.circle(img, (x + w // 2, max(y - 4, 3)), max(w // 4, 2), (150, 180, 220), -1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img)


def own_data_json() -> Dict:
    """The JSON of the set (image ids as strings, to exercise the non-COCO spelling)."""
    images, annotations, queries = [], [], []
    for i, (name, split, camera, persons) in enumerate(FRAMES):
        img = {"id": f"img{i}", "file_name": name, "height": HEIGHT, "width": WIDTH, "split": split}
        if camera >= 0:
            img.update(camera_id=camera, frame=int(name[-8:-4]), timestamp=int(name[-8:-4]) / 25)
        images.append(img)
        for x, y, w, h, identity in persons:
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": f"img{i}",
                    "bbox": [x, y, w, h],
                    "person_id": identity,
                }
            )
    for k, (i, j) in enumerate(QUERIES):
        x, y, w, h, identity = FRAMES[i][3][j]
        queries.append(
            {"id": k, "image_id": f"img{i}", "bbox": [x, y, w, h], "person_id": identity}
        )
    # the query image's own box is not a gallery annotation: drop it from the annotations
    annotations = [a for a in annotations if a["image_id"] != "img7"]
    return {
        "info": {"description": "tiny own data set"},
        "images": images,
        "annotations": annotations,
        "queries": queries,
    }


def write_own_data(folder: str, name: str = "own") -> str:
    """Draw the frames under ``folder/images``, write ``folder/<name>.json``, return its path."""
    for i, (file_name, _, _, persons) in enumerate(FRAMES):
        draw_frame(os.path.join(folder, "images", file_name), persons, seed=i)
    data = dict(image_root="images", **own_data_json())
    path = os.path.join(folder, name + ".json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return path
