"""MovieNet-PS (Qin et al., ICASSP 2023) in its distributed format: stored like CUHK-SYSU.

Layout of ``root`` (``MovieNet-PS/``; docs/movienet-ps.md)::

    Image/<name>.jpg  (or Image/SSM/<name>.jpg, as in CUHK-SYSU: the first that is a folder)
    annotation/Images.mat                  ``Img``, as CUHK-SYSU's (imname, nAppear, box)
    annotation/pool_{2000,4000,10000}.mat  ``pool``: cell of the gallery image names of a size
    annotation/test/train_test/Train_app{10,30,50,70,100}.mat
                                           ``Train``: one row per training identity, 3 cells;
                                           the third a k x 3 cell of its appearances
                                           (image name, [x, y, w, h], hard flag)
    annotation/test/train_test/TestG{2000,4000,10000}.mat
                                           ``TestG<size>``, as CUHK-SYSU's (Query, Gallery)

What differs from CUHK-SYSU: the training level ``Train_app<N>`` (at most N appearances per
identity) chooses the training identities *and* images: the training split is the images those
appearances are in (first-appearance order, each once), not "all images minus the pool"; the
gallery of a size is its own ``pool_<size>.mat``, labeled from ``TestG<size>.mat`` alone.

Identities: a training identity is the number in the first cell of its ``Train`` row when it
holds one (``"p1234"`` → 1234), else its row number (1-based); labels ``person_id`` are
contiguous in increasing identity order; test identities come from ``Query.idname`` as in
CUHK-SYSU. Boxes, checks and the dicts are CUHK-SYSU's (``cuhk_sysu.py``): the same functions.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Tuple

import numpy as np

from .common import DatasetFormatError, cell_strings, load_mat, mat_str
from .cuhk_sysu import (
    IntBox,
    _assign,
    _int_box,
    load_cuhk_sysu_queries,
    parse_identity,
    read_images,
    read_protocol,
    scene_dicts,
)

logger = logging.getLogger(__name__)

__all__ = [
    "load_movienet_ps_scenes",
    "load_movienet_ps_queries",
    "TRAIN_APPEARANCES",
    "GALLERY_SIZES",
    "MOVIENET_PS_LAYOUT",
]

#: Training levels (``Train_app<N>``) and gallery sizes (``TestG<size>``, ``pool_<size>``).
TRAIN_APPEARANCES = (10, 30, 50, 70, 100)
GALLERY_SIZES = (2000, 4000, 10000)
DEFAULT_TRAIN_APPEARANCES = 10
DEFAULT_GALLERY_SIZE = 2000
MOVIENET_PS_LAYOUT = (
    "<root>/Image/*.jpg (or <root>/Image/SSM/*.jpg), <root>/annotation/Images.mat (Img), "
    "<root>/annotation/pool_{2000,4000,10000}.mat (pool), "
    "<root>/annotation/test/train_test/Train_app{10,30,50,70,100}.mat (Train), "
    "<root>/annotation/test/train_test/TestG{2000,4000,10000}.mat (TestG<size>)"
)


def _paths(root: str) -> Dict[str, str]:
    ann = os.path.join(root, "annotation")
    return {
        "pool": os.path.join(ann, "pool_{}.mat"),
        "train": os.path.join(ann, "test", "train_test", "Train_app{}.mat"),
    }


def image_dir(root: str) -> str:
    """``Image/SSM`` when it is a folder (CUHK-SYSU's place), else ``Image``."""
    ssm = os.path.join(root, "Image", "SSM")
    return ssm if os.path.isdir(ssm) else os.path.join(root, "Image")


def read_pool(root: str, gallery_size: int) -> List[str]:
    """``pool_<size>.mat``: the gallery image names of that size, in file order."""
    path = _paths(root)["pool"].format(gallery_size)
    return cell_strings(load_mat(path, ["pool"], MOVIENET_PS_LAYOUT), f"{path}:pool")


def _row_identity(first_cell, row: int, where: str) -> int:
    try:
        name = mat_str(first_cell, where)
    except DatasetFormatError:
        return row + 1
    return parse_identity(name, where) if re.search(r"\d", name) else row + 1


def read_train_appearances(
    root: str, appearances: int
) -> List[Tuple[int, List[Tuple[str, IntBox]]]]:
    """``Train_app<N>.mat``: per training identity, (identity, [(image name, [x, y, w, h])])."""
    path = _paths(root)["train"].format(appearances)
    train = np.asarray(load_mat(path, ["Train"], MOVIENET_PS_LAYOUT), dtype=object)
    if train.ndim != 2 or train.shape[1] < 3:
        raise DatasetFormatError(
            f"{path}:Train: expected one row of 3 cells per identity, got shape {train.shape}"
        )
    out = []
    for i, row in enumerate(train):
        where = f"{path}:Train{{{i + 1},:}}"
        scenes = np.asarray(row[2], dtype=object)
        if scenes.size and (scenes.ndim != 2 or scenes.shape[1] < 2):
            raise DatasetFormatError(
                f"{where}: appearances must be a k x 3 cell (name, box, hard), got {scenes.shape}"
            )
        apps = []
        for j, scene in enumerate(scenes):
            box = _int_box(scene[1], f"{where}{{3}}{{{j + 1},2}}")
            if box is None:
                raise DatasetFormatError(f"{where}{{3}}{{{j + 1},2}}: empty box")
            apps.append((mat_str(scene[0], f"{where}{{3}}{{{j + 1},1}}"), box))
        out.append((_row_identity(row[0], i, where + "{1}"), apps))
    return out


def load_movienet_ps_scenes(
    root: str,
    split: str,
    train_appearances: int = DEFAULT_TRAIN_APPEARANCES,
    gallery_size: int = DEFAULT_GALLERY_SIZE,
) -> List[dict]:
    """Detectron2 dicts of the ``train`` images of ``Train_app<train_appearances>`` or of the
    ``gallery`` images of ``pool_<gallery_size>`` (docs/interfaces.md)."""
    if split not in ("train", "gallery"):
        raise ValueError(f"MovieNet-PS split must be 'train' or 'gallery', got {split!r}")
    _, boxes, dropped = read_images(root)
    counters = {"unmatched": 0, "conflicting": 0}
    identity_of: Dict[Tuple[str, IntBox], int] = {}
    label_of: Dict[int, int] = {}
    if split == "train":
        source = _paths(root)["train"].format(train_appearances)
        image_names: List[str] = []
        for identity, scenes in read_train_appearances(root, train_appearances):
            for name, box in scenes:
                if name not in boxes:
                    raise DatasetFormatError(f"{source}: image {str(name)!r} is not in Images.mat")
                image_names.append(name)
                _assign(identity_of, boxes, name, box, identity, counters)
        image_names = list(dict.fromkeys(image_names))
        label_of = {k: i for i, k in enumerate(sorted(set(identity_of.values())))}
    else:
        source = f"TestG{gallery_size}.mat"
        image_names = read_pool(root, gallery_size)
        missing = [n for n in image_names if n not in boxes]
        if missing:
            raise DatasetFormatError(
                f"{_paths(root)['pool'].format(gallery_size)}: {len(missing)} pool images are "
                f"not in Images.mat (e.g. {missing[:3]})"
            )
        for q in read_protocol(root, gallery_size):
            _assign(identity_of, boxes, q["imname"], q["box"], q["identity"], counters)
            for name, box in q["gallery"]:
                if box is not None:
                    _assign(identity_of, boxes, name, box, q["identity"], counters)
    return scene_dicts(
        root, split, image_dir(root), image_names, boxes, identity_of, label_of, dropped,
        counters, source, dataset="MovieNet-PS",
    )  # fmt: skip


def load_movienet_ps_queries(root: str, gallery_size: int = DEFAULT_GALLERY_SIZE) -> List[dict]:
    """Query dicts of ``TestG<gallery_size>.mat`` in file order, each with its gallery list."""
    return load_cuhk_sysu_queries(
        root, gallery_size, image_dir=image_dir(root), dataset="MovieNet-PS"
    )
