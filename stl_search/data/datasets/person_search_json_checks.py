"""Checks of a person-search JSON file (format: docs/own-data.md), each problem with its record.

A data set assembled by hand or by a script goes wrong in a few typical ways: an image moved or
misnamed, a box in the wrong coordinates or of zero size, a typo in a split, an identity written
as a string, a query whose person never appears in the gallery. Training or evaluating on such a
file fails much later, far from the cause (or, worse, silently gives wrong numbers), so every
record is checked here once and every problem is reported with the record it sits in: the list
and index (``annotations[12]``), the image file, the box index within its image, and the field.

:func:`check_person_search_json` returns all problems at once (the loader refuses a file with
any; ``python -m stl_search.data.validate`` prints them) and notes: facts worth knowing that are
not errors (boxes extending past the image border, as real data sets have at the frame edges).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from .common import image_size

__all__ = ["SPLITS", "PROBLEM_KINDS", "Problem", "CheckResult", "check_person_search_json"]

SPLITS = ("train", "gallery", "query")
PROBLEM_KINDS = (
    "bad structure",
    "missing field",
    "wrong type",
    "non-finite number",
    "invalid value",
    "unknown split",
    "duplicate image id",
    "duplicate file name",
    "missing image file",
    "image size mismatch",
    "unknown image id",
    "zero-size box",
    "box outside the image",
    "unlabeled query",
    "query on a training image",
    "query identity absent from the gallery",
    "mixed gallery lists",
)


@dataclass(frozen=True)
class Problem:
    """One problem: ``record`` names the record (list, index, image file, box index), ``field``
    the key ("" for the record as a whole), ``kind`` one of :data:`PROBLEM_KINDS`."""

    record: str
    field: str
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.record}, field {self.field!r}" if self.field else self.record
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class CheckResult:
    problems: List[Problem] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


#: The range of the integer fields: evaluation keeps identities and camera ids in int64 arrays.
INT64_RANGE = (-(2**63), 2**63 - 1)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


class _Checker:
    def __init__(self, data: Any, image_root: str) -> None:
        self.data = data
        self.image_root = image_root
        self.result = CheckResult()
        self.images: Dict[Any, dict] = {}  # id -> image record (first of each id)
        self.image_label: Dict[Any, str] = {}  # id -> 'file "..."' for messages
        self.beyond_border = 0

    def problem(self, record: str, field_: str, kind: str, detail: str) -> None:
        self.result.problems.append(Problem(record, field_, kind, detail))

    # ------------------------------------------------------------------ fields
    def require(self, rec: dict, where: str, key: str) -> bool:
        if key not in rec:
            self.problem(
                where, key, "missing field", f"required (has: {', '.join(rec) or 'nothing'})"
            )
            return False
        return True

    def int_field(self, rec: dict, where: str, key: str, minimum: Optional[int] = None) -> bool:
        v = rec[key]
        if _is_number(v) and not math.isfinite(v):
            self.problem(where, key, "non-finite number", f"{v}")
            return False
        if not _is_int(v):
            self.problem(where, key, "wrong type", f"must be an int, got {_type_name(v)} {v!r}")
            return False
        if minimum is not None and v < minimum:
            self.problem(where, key, "invalid value", f"must be >= {minimum}, got {v}")
            return False
        return self.in_int64(v, where, key)

    def in_int64(self, v: int, where: str, key: str) -> bool:
        if INT64_RANGE[0] <= v <= INT64_RANGE[1]:
            return True
        self.problem(
            where, key, "invalid value", f"{v} is outside the 64-bit integer range (|v| < 2**63)"
        )
        return False

    def person_id(self, rec: dict, where: str) -> Optional[int]:
        if not self.require(rec, where, "person_id"):
            return None
        v = rec["person_id"]
        if not _is_int(v):
            self.problem(
                where,
                "person_id",
                "wrong type",
                f"must be an int (the identity; -1 = unlabeled), got {_type_name(v)} {v!r}",
            )
            return None
        if v < -1:
            self.problem(where, "person_id", "invalid value", f"must be >= -1, got {v}")
            return None
        return v if self.in_int64(v, where, "person_id") else None

    def box(self, value: Any, where: str, field_: str, image: Optional[dict]) -> bool:
        """An ``[x, y, w, h]`` box of ``image`` (None: the image is unknown, sizes not checked)."""
        if not isinstance(value, list) or len(value) != 4 or not all(map(_is_number, value)):
            self.problem(
                where, field_, "wrong type", f"must be [x, y, w, h] (4 numbers), got {value!r}"
            )
            return False
        if not all(math.isfinite(v) for v in value):
            self.problem(where, field_, "non-finite number", f"{value}")
            return False
        x, y, w, h = value
        if w <= 0 or h <= 0:
            self.problem(where, field_, "zero-size box", f"width {w} and height {h} must be > 0")
            return False
        if image is None or not (_is_int(image.get("width")) and _is_int(image.get("height"))):
            return True
        width, height = image["width"], image["height"]
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            self.problem(
                where,
                field_,
                "box outside the image",
                f"[x, y, w, h] = {value} does not overlap the {width} x {height} image",
            )
            return False
        if x < 0 or y < 0 or x + w > width or y + h > height:
            self.beyond_border += 1
        return True

    def image_ref(self, rec: dict, where: str) -> Optional[dict]:
        if not self.require(rec, where, "image_id"):
            return None
        image_id = rec["image_id"]
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            self.problem(
                where, "image_id", "wrong type", f"must be an int or a str, got {image_id!r}"
            )
            return None
        if image_id not in self.images:
            self.problem(where, "image_id", "unknown image id", f"no image has id {image_id!r}")
            return None
        return self.images[image_id]

    # ------------------------------------------------------------------ lists
    def top_level(self) -> Tuple[list, list, list]:
        if not isinstance(self.data, dict):
            self.problem(
                "the file",
                "",
                "bad structure",
                f"must be a JSON object, got {_type_name(self.data)}",
            )
            return [], [], []
        lists = []
        for key, required in (("images", True), ("annotations", False), ("queries", False)):
            v = self.data.get(key, None if required else [])
            if v is None:
                self.problem("the file", key, "missing field", "required (a list of image records)")
                v = []
            elif not isinstance(v, list):
                self.problem("the file", key, "wrong type", f"must be a list, got {_type_name(v)}")
                v = []
            lists.append(v)
        return lists[0], lists[1], lists[2]

    def check_images(self, images: list) -> None:
        first_of_name: Dict[Tuple[str, str], int] = {}
        first_of_id: Dict[Any, int] = {}
        for i, img in enumerate(images):
            where = f"images[{i}]"
            if not isinstance(img, dict):
                self.problem(
                    where, "", "bad structure", f"must be an object, got {_type_name(img)}"
                )
                continue
            if isinstance(img.get("file_name"), str):
                where = f'images[{i}] (file "{img["file_name"]}")'
            ok = all(
                [
                    self.require(img, where, k)
                    for k in ("id", "file_name", "height", "width", "split")
                ]
            )
            if "id" in img:
                image_id = img["id"]
                if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
                    self.problem(
                        where, "id", "wrong type", f"must be an int or a str, got {image_id!r}"
                    )
                elif image_id in first_of_id:
                    self.problem(
                        where,
                        "id",
                        "duplicate image id",
                        f"{image_id!r} is also images[{first_of_id[image_id]}]",
                    )
                else:
                    first_of_id[image_id] = i
                    self.images[image_id] = img
            sizes_ok = all(
                [self.int_field(img, where, k, 1) for k in ("height", "width") if k in img]
            )
            for k in ("camera_id", "frame"):
                if k in img:
                    self.int_field(img, where, k)
            if "timestamp" in img:
                t = img["timestamp"]
                if not _is_number(t):
                    self.problem(where, "timestamp", "wrong type", f"must be a number, got {t!r}")
                elif not math.isfinite(t):
                    self.problem(where, "timestamp", "non-finite number", f"{t}")
            split = img.get("split")
            if "split" in img and split not in SPLITS:
                self.problem(
                    where, "split", "unknown split", f"{split!r} (allowed: {', '.join(SPLITS)})"
                )
            name = img.get("file_name")
            if "file_name" in img and (not isinstance(name, str) or not name):
                self.problem(
                    where, "file_name", "wrong type", f"must be a non-empty str, got {name!r}"
                )
                continue
            if not ok:
                continue
            if (split, name) in first_of_name:
                self.problem(
                    where,
                    "file_name",
                    "duplicate file name",
                    f"{name!r} is also images[{first_of_name[(split, name)]}] of split {split!r}",
                )
            first_of_name.setdefault((split, name), i)
            self.check_image_file(img, where, sizes_ok)

    def check_image_file(self, img: dict, where: str, sizes_ok: bool) -> None:
        path = os.path.join(self.image_root, img["file_name"])
        if not os.path.isfile(path):
            self.problem(where, "file_name", "missing image file", f"{path} not found")
            return
        if not sizes_ok:
            return
        try:
            height, width = image_size(path)
        except Exception as e:  # PIL raises several types for unreadable files
            self.problem(where, "file_name", "missing image file", f"{path} cannot be read ({e})")
            return
        if (height, width) != (img["height"], img["width"]):
            self.problem(
                where,
                "height",
                "image size mismatch",
                f"the record says {img['height']} x {img['width']} (height x width), {path} is "
                f"{height} x {width}",
            )

    def check_annotations(self, annotations: list) -> Set[int]:
        """Checks the boxes; returns the identities present in the gallery split."""
        box_index: Dict[Any, int] = defaultdict(int)
        gallery_ids: Set[int] = set()
        unused = 0
        for i, ann in enumerate(annotations):
            where = f"annotations[{i}]"
            if not isinstance(ann, dict):
                self.problem(
                    where, "", "bad structure", f"must be an object, got {_type_name(ann)}"
                )
                continue
            image = self.image_ref(ann, where)
            if image is not None:
                k = box_index[ann["image_id"]]
                where = f'annotations[{i}] (image "{image.get("file_name")}", box {k})'
                box_index[ann["image_id"]] += 1
                unused += image.get("split") == "query"
            if self.require(ann, where, "bbox"):
                self.box(ann["bbox"], where, "bbox", image)
            pid = self.person_id(ann, where)
            if (
                image is not None
                and image.get("split") == "gallery"
                and pid is not None
                and pid >= 0
            ):
                gallery_ids.add(pid)
        if unused:
            self.result.notes.append(f"{unused} annotations on query-split images are not used")
        return gallery_ids

    def check_queries(self, queries: list, gallery_ids: Set[int]) -> None:
        with_list: Optional[Tuple[int, bool]] = None
        outside_gallery = 0
        for i, q in enumerate(queries):
            where = f"queries[{i}]"
            if not isinstance(q, dict):
                self.problem(where, "", "bad structure", f"must be an object, got {_type_name(q)}")
                continue
            image = self.image_ref(q, where)
            if image is not None:
                where = f'queries[{i}] (image "{image.get("file_name")}")'
                if image.get("split") == "train":
                    self.problem(
                        where,
                        "image_id",
                        "query on a training image",
                        "a query's image must be of split gallery or query",
                    )
            if self.require(q, where, "bbox"):
                self.box(q["bbox"], where, "bbox", image)
            pid = self.person_id(q, where)
            if pid == -1:
                self.problem(
                    where, "person_id", "unlabeled query", "a query needs its identity (>= 0)"
                )
            elif pid is not None and pid not in gallery_ids:
                self.problem(
                    where,
                    "person_id",
                    "query identity absent from the gallery",
                    f"no box of a gallery-split image has person_id {pid}",
                )
            has_list = "gallery" in q
            if with_list is None:
                with_list = (i, has_list)
            elif with_list[1] != has_list:
                self.problem(
                    where,
                    "gallery",
                    "mixed gallery lists",
                    f"queries[{with_list[0]}] {'has' if with_list[1] else 'has no'} gallery list, "
                    f"this one {'has' if has_list else 'has none'}: all or none must have one",
                )
            if has_list:
                outside_gallery += self.check_gallery_list(q["gallery"], where)
        if outside_gallery:
            self.result.notes.append(
                f"{outside_gallery} gallery-list entries name images outside the gallery split "
                "(they count as listed images without detections)"
            )

    def check_gallery_list(self, entries: Any, where: str) -> int:
        if not isinstance(entries, list):
            self.problem(
                where, "gallery", "wrong type", f"must be a list, got {_type_name(entries)}"
            )
            return 0
        outside = 0
        for j, g in enumerate(entries):
            gwhere = f"{where}.gallery[{j}]"
            if not isinstance(g, dict):
                self.problem(gwhere, "", "bad structure", f"must be an object, got {_type_name(g)}")
                continue
            image = self.image_ref(g, gwhere)
            if image is not None:
                gwhere = f'{gwhere} (image "{image.get("file_name")}")'
                outside += image.get("split") != "gallery"
            if self.require(g, gwhere, "bbox") and g["bbox"] is not None:
                self.box(g["bbox"], gwhere, "bbox", image)
        return outside


def check_person_search_json(data: Any, image_root: str) -> CheckResult:
    """Every problem of a parsed person-search JSON file whose image ``file_name``\\ s are
    relative to ``image_root`` (or absolute).

    Returns:
        :class:`CheckResult` with ``problems`` (empty for a valid file) and ``notes``.
    """
    c = _Checker(data, image_root)
    images, annotations, queries = c.top_level()
    c.check_images(images)
    gallery_ids = c.check_annotations(annotations)
    c.check_queries(queries, gallery_ids)
    if c.beyond_border:
        c.result.notes.append(
            f"{c.beyond_border} boxes extend past the image border (kept; training clips them)"
        )
    return c.result
