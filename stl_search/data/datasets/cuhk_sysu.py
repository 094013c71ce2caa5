"""CUHK-SYSU (Xiao et al. 2017) in its distributed format.

Layout of ``root`` (``CUHK-SYSU/``)::

    Image/SSM/s{n}.jpg
    annotation/Images.mat                  ``Img``: 1 x N struct (imname, nAppear, box);
                                           ``box``: 1 x n struct (idlocate = [x, y, w, h])
    annotation/pool.mat                    ``pool``: cell of the test (gallery) image names
    annotation/test/train_test/Train.mat   ``Train``: cell, one struct per training identity
                                           (idname, nAppear,
                                           scene: struct (imname, idlocate, ishard))
    annotation/test/train_test/TestG{50,100,500,1000,2000,4000}.mat
                                           ``TestG<size>``: struct per query with ``Query``
                                           (imname, idlocate, ishard, idname) and ``Gallery``
                                           (struct: imname, idlocate (empty if absent), ishard)

Training images are all images of ``Images.mat`` minus the pool. Boxes are ``[x, y, w, h]`` in
integer pixels: truncated to int, ``x2 = x + w``, ``y2 = y + h`` (no clipping, as the reference
evaluation); boxes with ``w <= 0`` or ``h <= 0``, and train / gallery boxes entirely outside their
image (clipping would make them a box in its corner), are dropped and counted in the log, as the
PRW loader does.

Every number is checked where it is read: a NaN / infinite coordinate, a string in a box and an
identity number beyond int64 are errors naming the file, the record and the field.

Identities: ``identity`` is the int of the ``idname`` (``"p1234"`` → 1234); training labels
``person_id`` are contiguous over the ``Train.mat`` identities in increasing ``identity`` order;
every person not listed in ``Train.mat`` (train) or in a ``TestG`` file (gallery) is unlabeled
(-1). Train/TestG boxes are matched to ``Images.mat`` boxes of the same image by exact integer
``[x, y, w, h]``; unmatched ones are counted in the log.

Query splits keep the ``TestG`` gallery list exactly (file order, duplicates kept, the query's
own image kept when listed): ``gallery = [{"image_id", "bbox": XYXY or None}]``.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.structures import BoxMode

from .common import (
    DatasetFormatError,
    cell_strings,
    count_log,
    image_size,
    load_mat,
    mat_str,
    mat_vector,
    outside_frame,
    person_id,
    struct_elements,
)

logger = logging.getLogger(__name__)

__all__ = ["load_cuhk_sysu_scenes", "load_cuhk_sysu_queries", "GALLERY_SIZES", "CUHK_SYSU_LAYOUT"]

GALLERY_SIZES = (50, 100, 500, 1000, 2000, 4000)
CUHK_SYSU_LAYOUT = (
    "<root>/Image/SSM/*.jpg, <root>/annotation/Images.mat (Img), "
    "<root>/annotation/pool.mat (pool), "
    "<root>/annotation/test/train_test/Train.mat (Train), "
    "<root>/annotation/test/train_test/TestG{50,100,500,1000,2000,4000}.mat (TestG<size>)"
)
IntBox = Tuple[int, int, int, int]


def _paths(root: str) -> Dict[str, str]:
    ann = os.path.join(root, "annotation")
    return {
        "images": os.path.join(ann, "Images.mat"),
        "pool": os.path.join(ann, "pool.mat"),
        "train": os.path.join(ann, "test", "train_test", "Train.mat"),
        "testg": os.path.join(ann, "test", "train_test", "TestG{}.mat"),
        "image_dir": os.path.join(root, "Image", "SSM"),
    }


def parse_identity(idname: str, where: str) -> int:
    """``"p1234"`` → 1234 (within int64, else :class:`DatasetFormatError` naming ``where``)."""
    m = re.search(r"(\d+)", idname)
    if m is None:
        raise DatasetFormatError(
            f"{where}: identity name {idname!r} has no number (expected like 'p1234')"
        )
    return person_id(m.group(1), where)


def _int_box(value, where: str) -> Optional[IntBox]:
    """An ``idlocate`` [x, y, w, h] truncated to int; None when it is empty."""
    v = mat_vector(value, where, length=4)
    if v.size == 0:
        return None
    return tuple(int(t) for t in v)  # type: ignore[return-value]


def _xyxy(box: IntBox) -> List[float]:
    x, y, w, h = box
    return [float(x), float(y), float(x + w), float(y + h)]


def read_images(root: str) -> Tuple[List[str], Dict[str, List[IntBox]], int]:
    """``Images.mat``: image names in file order, their valid boxes, and the number dropped."""
    path = _paths(root)["images"]
    imgs = struct_elements(
        load_mat(path, ["Img"], CUHK_SYSU_LAYOUT), ("imname", "box"), f"{path}:Img"
    )
    names: List[str] = []
    boxes: Dict[str, List[IntBox]] = {}
    dropped = 0
    for i, img in enumerate(imgs):
        where = f"{path}:Img[{i}]"
        name = mat_str(img["imname"], where + ".imname")
        valid = []
        for j, b in enumerate(struct_elements(img["box"], ("idlocate",), where + ".box")):
            box = _int_box(b["idlocate"], f"{where}.box[{j}].idlocate")
            if box is None or box[2] <= 0 or box[3] <= 0:
                dropped += 1
                continue
            valid.append(box)
        names.append(name)
        boxes[name] = valid
    return names, boxes, dropped


def read_pool(root: str) -> List[str]:
    """``pool.mat``: the names of the test (gallery) images, in file order."""
    path = _paths(root)["pool"]
    return cell_strings(load_mat(path, ["pool"], CUHK_SYSU_LAYOUT), f"{path}:pool")


def read_train_identities(root: str) -> List[Tuple[int, List[Tuple[str, IntBox]]]]:
    """``Train.mat``: per training identity, (identity, [(image name, [x, y, w, h]), ...])."""
    path = _paths(root)["train"]
    train = load_mat(path, ["Train"], CUHK_SYSU_LAYOUT)
    if isinstance(train, np.ndarray) and train.dtype.names is not None:  # a struct array
        items = struct_elements(train, ("idname", "scene"), f"{path}:Train")
    else:  # the distributed file: a cell, one 1x1 struct per identity
        items = [
            struct_elements(c, ("idname", "scene"), f"{path}:Train{{{i}}}")[0]
            for i, c in enumerate(np.asarray(train, dtype=object).reshape(-1, order="F"))
        ]
    out = []
    for i, item in enumerate(items):
        where = f"{path}:Train{{{i}}}"
        identity = parse_identity(mat_str(item["idname"], where + ".idname"), where + ".idname")
        scenes = []
        for j, s in enumerate(
            struct_elements(item["scene"], ("imname", "idlocate"), where + ".scene")
        ):
            box = _int_box(s["idlocate"], f"{where}.scene[{j}].idlocate")
            if box is None:
                raise DatasetFormatError(f"{where}.scene[{j}].idlocate: empty box")
            scenes.append((mat_str(s["imname"], f"{where}.scene[{j}].imname"), box))
        out.append((identity, scenes))
    return out


def read_protocol(root: str, gallery_size: int) -> List[dict]:
    """``TestG<size>.mat``: per query, identity, query image/box and the gallery list (file
    order)."""
    path = _paths(root)["testg"].format(gallery_size)
    key = f"TestG{gallery_size}"
    entries = struct_elements(
        load_mat(path, [key], CUHK_SYSU_LAYOUT), ("Query", "Gallery"), f"{path}:{key}"
    )
    out = []
    for i, e in enumerate(entries):
        where = f"{path}:{key}[{i}]"
        q = struct_elements(e["Query"], ("imname", "idlocate", "idname"), where + ".Query")[0]
        qbox = _int_box(q["idlocate"], where + ".Query.idlocate")
        if qbox is None:
            raise DatasetFormatError(f"{where}.Query.idlocate: empty query box")
        gallery = []
        for j, g in enumerate(
            struct_elements(e["Gallery"], ("imname", "idlocate"), where + ".Gallery")
        ):
            gallery.append(
                (
                    mat_str(g["imname"], f"{where}.Gallery[{j}].imname"),
                    _int_box(g["idlocate"], f"{where}.Gallery[{j}].idlocate"),
                )
            )
        out.append(
            {
                "identity": parse_identity(
                    mat_str(q["idname"], where + ".Query.idname"), where + ".Query.idname"
                ),
                "imname": mat_str(q["imname"], where + ".Query.imname"),
                "box": qbox,
                "gallery": gallery,
            }
        )
    return out


def _assign(
    identity_of: Dict[Tuple[str, IntBox], int],
    boxes: Dict[str, List[IntBox]],
    name: str,
    box: IntBox,
    identity: int,
    counters: Dict[str, int],
) -> None:
    if box not in boxes.get(name, ()):
        counters["unmatched"] += 1
        return
    old = identity_of.setdefault((name, box), identity)
    if old != identity:
        counters["conflicting"] += 1


def load_cuhk_sysu_scenes(
    root: str, split: str, gallery_sizes: Sequence[int] = GALLERY_SIZES
) -> List[dict]:
    """Detectron2 dicts of the CUHK-SYSU ``train`` or ``gallery`` images (docs/interfaces.md).

    Gallery identities come from every ``TestG<size>.mat`` of ``gallery_sizes`` present (at least
    one must be).
    """
    if split not in ("train", "gallery"):
        raise ValueError(f"CUHK-SYSU split must be 'train' or 'gallery', got {split!r}")
    paths = _paths(root)
    names, boxes, dropped = read_images(root)
    pool = read_pool(root)
    missing = [n for n in pool if n not in boxes]
    if missing:
        raise DatasetFormatError(
            f"{paths['pool']}: {len(missing)} pool images are not in "
            f"{paths['images']} (e.g. {missing[:3]})"
        )
    counters = {"unmatched": 0, "conflicting": 0}
    identity_of: Dict[Tuple[str, IntBox], int] = {}
    if split == "train":
        pool_set = set(pool)
        image_names = [n for n in names if n not in pool_set]
        for identity, scenes in read_train_identities(root):
            for name, box in scenes:
                _assign(identity_of, boxes, name, box, identity, counters)
        identities = sorted(set(identity_of.values()))
        label_of = {identity: i for i, identity in enumerate(identities)}
        source = paths["train"]
    else:
        image_names = pool
        present = [s for s in gallery_sizes if os.path.isfile(paths["testg"].format(s))]
        if not present:
            raise FileNotFoundError(
                f"{paths['testg'].format('<size>')}: no TestG file found for sizes "
                f"{list(gallery_sizes)}. Expected layout: {CUHK_SYSU_LAYOUT}"
            )
        for size in present:
            for q in read_protocol(root, size):
                _assign(identity_of, boxes, q["imname"], q["box"], q["identity"], counters)
                for name, box in q["gallery"]:
                    if box is not None:
                        _assign(identity_of, boxes, name, box, q["identity"], counters)
        label_of = {}
        source = ", ".join(f"TestG{s}.mat" for s in present)
    return scene_dicts(
        root, split, paths["image_dir"], image_names, boxes, identity_of, label_of, dropped,
        counters, source,
    )  # fmt: skip


def scene_dicts(
    root: str,
    split: str,
    image_dir: str,
    image_names: Sequence[str],
    boxes: Dict[str, List[IntBox]],
    identity_of: Dict[Tuple[str, IntBox], int],
    label_of: Dict[int, int],
    dropped: int,
    counters: Dict[str, int],
    source: str,
    dataset: str = "CUHK-SYSU",
) -> List[dict]:
    """The Detectron2 dicts of ``image_names`` (files in ``image_dir``): every valid box of
    ``Images.mat``, with the identity ``identity_of`` gives it (-1: unlabeled) and its training
    label; logs the counters of the identity assignment from ``source``. Shared with the data sets
    stored like CUHK-SYSU (``movienet_ps.py``)."""
    if counters["unmatched"]:
        logger.warning(
            "%s %s: %d labeled boxes of %s match no valid box of Images.mat (ignored)",
            dataset,
            split,
            counters["unmatched"],
            source,
        )
    if counters["conflicting"]:
        logger.warning(
            "%s %s: %d boxes are given two different identities in %s (first kept)",
            dataset,
            split,
            counters["conflicting"],
            source,
        )

    dicts = []
    num_boxes = 0
    outside = 0
    for name in image_names:
        file_name = os.path.join(image_dir, name)
        height, width = image_size(file_name)
        annos = []
        for box in boxes[name]:
            if outside_frame(*box, height, width):
                outside += 1
                continue
            identity = identity_of.get((name, box), -1)
            annos.append(
                {
                    "bbox": _xyxy(box),
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": 0,
                    "person_id": label_of.get(identity, -1),
                    "identity": identity,
                }
            )
        num_boxes += len(annos)
        dicts.append(
            {
                "file_name": os.path.abspath(file_name),
                "image_id": name,
                "height": height,
                "width": width,
                "camera_id": -1,
                "annotations": annos,
            }
        )
    count_log(
        f"{dataset} {split} ({root})",
        len(dicts),
        num_boxes,
        {
            "non-positive width or height (all of Images.mat)": dropped,
            "entirely outside the image": outside,
        },
    )
    if split == "train":
        logger.info("%s train (%s): %d training identities", dataset, root, len(label_of))
    return dicts


def load_cuhk_sysu_queries(
    root: str, gallery_size: int = 100, image_dir: Optional[str] = None, dataset: str = "CUHK-SYSU"
) -> List[dict]:
    """Query dicts of ``TestG<gallery_size>.mat`` in file order, each with its gallery list
    (images in ``image_dir``, default ``Image/SSM``)."""
    image_dir = image_dir or _paths(root)["image_dir"]
    queries = []
    degenerate = 0
    for i, q in enumerate(read_protocol(root, gallery_size)):
        file_name = os.path.join(image_dir, q["imname"])
        height, width = image_size(file_name)
        gallery = []
        for name, box in q["gallery"]:
            if box is not None and (box[2] <= 0 or box[3] <= 0):
                degenerate += 1
            gallery.append({"image_id": name, "bbox": None if box is None else _xyxy(box)})
        queries.append(
            {
                "file_name": os.path.abspath(file_name),
                "image_id": q["imname"],
                "height": height,
                "width": width,
                "camera_id": -1,
                "query_box": _xyxy(q["box"]),
                "identity": q["identity"],
                "query_index": i,
                "gallery": gallery,
            }
        )
    if degenerate:
        logger.warning(
            "%s TestG%d: %d gallery entries have a box with w <= 0 or h <= 0 (kept as listed)",
            dataset,
            gallery_size,
            degenerate,
        )
    logger.info("%s query G%d (%s): %d queries", dataset, gallery_size, root, len(queries))
    return queries
