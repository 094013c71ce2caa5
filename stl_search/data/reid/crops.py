"""The Re-ID crop data set of STL step 1 (paper 3.1): person crops cut from the scene images.

- :func:`build_reid_records` — the *labeled* persons (``person_id >= 0``) of a registered training
  scene split, one record per box: ``file_name``, ``bbox`` (XYXY_ABS), ``person_id`` (the split's
  contiguous training label), ``identity`` (raw), ``camera_id``, ``image_id``.
- :func:`build_reid_test_records` — a Re-ID style test set (paper Table 6): the query boxes of a
  query split, and the boxes with a known identity (``identity >= 0``) of its gallery split
  (``person_id = -1`` in both). A PRW query box is also annotated in its own frame, so the
  gallery holds it too: the evaluation must drop same-image matches (it does, in
  ``stl_search.reid.evaluation``).
- :class:`ReIDCropDataset` — ``dataset[i]`` is ``{"image": uint8 H×W×3 array (INPUT.FORMAT
  channel order, default BGR) of size REID.INPUT.SIZE, "person_id", "identity", "camera_id",
  "index"}``; augmentations are left to the caller (:mod:`stl_search.data.reid.transforms`).

Crops are cut lazily: each access decodes the scene image (a few recently decoded images are
kept per process), cuts the box (rounded outwards, clipped to the image) and resizes it to
``size`` (bilinear). That is cheap for the small synthetic frames. For large real frames, pass
``cache_file``: all crops are then cut once into a uint8 ``.npy`` array (written atomically,
reused while the records, size and format are the same) that every worker process memory-maps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog
from torch.utils.data import Dataset

from ...utils.images import read_image
from ...utils.io import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["ReIDCropDataset", "build_reid_records", "build_reid_test_records", "cut_crop"]


def build_reid_records(dataset_name: str) -> List[Dict[str, Any]]:
    """Records of the labeled persons (``person_id >= 0``) of training split ``dataset_name``."""
    dicts = DatasetCatalog.get(dataset_name)
    records = []
    for d in dicts:
        for a in d.get("annotations", ()):
            if a["person_id"] >= 0:
                records.append(
                    {
                        "file_name": d["file_name"],
                        "image_id": d["image_id"],
                        "bbox": list(a["bbox"]),
                        "person_id": int(a["person_id"]),
                        "identity": int(a["identity"]),
                        "camera_id": int(d.get("camera_id", -1)),
                    }
                )
    if not records:
        raise ValueError(
            f"{dataset_name!r}: no labeled persons (person_id >= 0); is it a training split?"
        )
    logger.info(
        "Re-ID records of %s: %d crops of %d identities",
        dataset_name,
        len(records),
        len({r["person_id"] for r in records}),
    )
    return records


def build_reid_test_records(
    query_name: str, gallery_name: str
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(query records, gallery records): the query boxes of ``query_name`` and the boxes with a
    known identity of ``gallery_name``; records as :func:`build_reid_records`, with
    ``person_id = -1``."""
    queries = [
        {
            "file_name": q["file_name"],
            "image_id": q["image_id"],
            "bbox": list(q["query_box"]),
            "person_id": -1,
            "identity": int(q["identity"]),
            "camera_id": int(q.get("camera_id", -1)),
        }
        for q in DatasetCatalog.get(query_name)
    ]
    gallery = [
        {
            "file_name": d["file_name"],
            "image_id": d["image_id"],
            "bbox": list(a["bbox"]),
            "person_id": -1,
            "identity": int(a["identity"]),
            "camera_id": int(d.get("camera_id", -1)),
        }
        for d in DatasetCatalog.get(gallery_name)
        for a in d.get("annotations", ())
        if a["identity"] >= 0
    ]
    if not queries or not gallery:
        raise ValueError(
            f"Re-ID test set of {query_name!r} / {gallery_name!r} is empty "
            f"({len(queries)} queries, {len(gallery)} gallery crops)"
        )
    logger.info(
        "Re-ID test records: %d queries (%s), %d gallery crops (%s)",
        len(queries),
        query_name,
        len(gallery),
        gallery_name,
    )
    return queries, gallery


def cut_crop(
    image: np.ndarray, bbox: Sequence[float], size: Tuple[int, int], where: str = ""
) -> np.ndarray:
    """Cut XYXY ``bbox`` (rounded outwards, clipped to the image), resized to ``size`` = (h, w)."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(np.floor(bbox[0]))), max(0, int(np.floor(bbox[1])))
    x2, y2 = min(w, int(np.ceil(bbox[2]))), min(h, int(np.ceil(bbox[3])))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: box {list(bbox)} is empty inside the {w}x{h} image")
    crop = image[y1:y2, x1:x2]
    return cv2.resize(crop, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


class ReIDCropDataset(Dataset):
    """Person crops of ``records`` resized to ``size`` = (height, width); see the module docstring.

    Args:
        records: from :func:`build_reid_records` / :func:`build_reid_test_records` (any dicts with
            ``file_name`` and ``bbox``; ``person_id``, ``identity``, ``camera_id`` default to -1).
        size: (height, width), e.g. ``cfg.REID.INPUT.SIZE``.
        image_format: channel order of the crops, ``"BGR"`` (Detectron2's default ``INPUT.FORMAT``)
            or ``"RGB"``.
        cache_file: optional ``.npy`` path; see the module docstring.
        decoded_cache: number of decoded scene images kept per process.
    """

    def __init__(
        self,
        records: Sequence[Dict[str, Any]],
        size: Sequence[int],
        image_format: str = "BGR",
        cache_file: Optional[str] = None,
        decoded_cache: int = 8,
    ):
        if image_format not in ("BGR", "RGB"):
            raise ValueError(
                f"ReIDCropDataset: image_format must be 'BGR' or 'RGB', got {image_format!r}"
            )
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"ReIDCropDataset: size must be (height, width), got {size!r}")
        self.records = list(records)
        self.size = (int(size[0]), int(size[1]))
        self.image_format = image_format
        self.cache_file = cache_file
        self._decoded_cache = int(decoded_cache)
        self._images: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._array: Optional[np.ndarray] = None
        if cache_file is not None:
            self._build_cache(cache_file)

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict:  # worker processes re-open the memory map and decode afresh
        state = dict(self.__dict__)
        state["_images"], state["_array"] = OrderedDict(), None
        return state

    def _read(self, file_name: str) -> np.ndarray:
        image = self._images.get(file_name)
        if image is None:
            image = read_image(file_name, self.image_format)
            self._images[file_name] = image
            while len(self._images) > self._decoded_cache:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(file_name)
        return image

    def crop(self, index: int) -> np.ndarray:
        """The uint8 H×W×3 crop of record ``index``."""
        if self.cache_file is not None:
            if self._array is None:
                self._array = np.load(self.cache_file, mmap_mode="r")
            return np.array(self._array[index])
        r = self.records[index]
        return cut_crop(self._read(r["file_name"]), r["bbox"], self.size, where=r["file_name"])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        r = self.records[index]
        return {
            "image": self.crop(index),
            "person_id": int(r.get("person_id", -1)),
            "identity": int(r.get("identity", -1)),
            "camera_id": int(r.get("camera_id", -1)),
            "index": int(index),
        }

    # ---- optional on-disk cache of all crops --------------------------------------------------
    def _fingerprint(self) -> str:
        h = hashlib.sha1()
        h.update(json.dumps([self.size, self.image_format]).encode())
        for r in self.records:
            h.update(json.dumps([r["file_name"], [round(float(v), 3) for v in r["bbox"]]]).encode())
        return h.hexdigest()

    def _build_cache(self, path: str) -> None:
        fingerprint = self._fingerprint()
        meta_path = path + ".json"
        if os.path.isfile(path) and os.path.isfile(meta_path):
            with open(meta_path) as f:
                if json.load(f).get("fingerprint") == fingerprint:
                    return
        cache_file, self.cache_file = self.cache_file, None  # cut from the images while building
        try:
            array = np.zeros((len(self.records), self.size[0], self.size[1], 3), np.uint8)
            order = sorted(range(len(self.records)), key=lambda i: self.records[i]["file_name"])
            for i in order:  # image by image: each scene is decoded once
                array[i] = self.crop(i)
            with atomic_open(path, "wb") as f:
                np.save(f, array)
            atomic_write_json(
                {"fingerprint": fingerprint, "num_crops": len(self.records)}, meta_path
            )
            logger.info("Re-ID crops cached in %s (%d crops)", path, len(self.records))
        finally:
            self.cache_file = cache_file
            self._images.clear()
