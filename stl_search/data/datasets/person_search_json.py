"""Person-search data sets in one COCO-style JSON file: your own data (format: docs/own-data.md).

Every person-search code base answers "how do I train on my own footage?" with its own
undocumented ``.mat`` layout. This is the answer here, in the shape Detectron2 users know from
``register_coco_instances``: one JSON file with ``images`` (``split`` train / gallery / query),
``annotations`` (COCO ``[x, y, w, h]`` boxes with a ``person_id``, -1 = unlabeled) and
``queries`` (boxes to search for, optionally each with an explicit gallery list, as CUHK-SYSU's
``TestG*.mat``), registered with :func:`register_person_search_json`.

The file maps one to one onto the data set dicts of docs/interfaces.md: ``train`` / ``gallery``
images become scene dicts (their ``annotations`` in file order, the JSON ``person_id`` as
``identity``, the contiguous training label ``person_id`` over the sorted training identities,
as the PRW and CUHK-SYSU loaders number them), ``queries`` become query dicts (``query_index`` =
position in the list), and ``image_id`` is the image's ``file_name``. :func:`dicts_to_json` is
the inverse (the converters and the synthetic set use it), so that a converted PRW or CUHK-SYSU
copy loads back to exactly the dicts of its native loader.

Each file is checked (``person_search_json_checks.py``) when it is registered and when a split is
loaded (once per file version): a file with any problem raises :class:`DatasetFormatError`
listing every problem with its record.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from detectron2.structures import BoxMode

from ...utils.io import atomic_open
from .builtin import register_linked_splits
from .common import DatasetFormatError
from .person_search_json_checks import SPLITS, check_person_search_json

logger = logging.getLogger(__name__)

__all__ = [
    "read_person_search_json",
    "resolve_image_root",
    "check_person_search_file",
    "json_to_dicts",
    "load_person_search_json",
    "dicts_to_json",
    "write_person_search_json",
    "register_person_search_json",
    "protocol_of",
]

MAX_LISTED_PROBLEMS = 50
_PASSED_THROUGH = ("frame", "timestamp")  # optional image fields, copied as they are
_CHECKED: Set[Tuple] = set()  # (json file, mtime, size, image root) of the files found valid


def read_person_search_json(json_file: str) -> Any:
    """The parsed file; a clear error naming the file (and line) when it is missing or not JSON."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{json_file}: person-search JSON file not found")
    with open(json_file, "rb") as f:
        text = f.read()
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f":{e.lineno}:{e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise DatasetFormatError(f"{json_file}{where}: not valid JSON ({e})") from e
    except RecursionError:
        raise DatasetFormatError(
            f"{json_file}: nested too deeply to read (lists or objects inside each other "
            "thousands of levels deep; a person-search file nests 4 levels)"
        ) from None


def resolve_image_root(json_file: str, data: Any, image_root: Optional[str] = None) -> str:
    """``image_root`` if given, else the file's ``image_root`` (relative to the file's folder),
    else the file's folder; absolute."""
    folder = os.path.dirname(os.path.abspath(json_file))
    if image_root is None and isinstance(data, dict) and isinstance(data.get("image_root"), str):
        image_root = os.path.join(folder, data["image_root"])
    return os.path.abspath(image_root if image_root is not None else folder)


def check_person_search_file(json_file: str, image_root: Optional[str] = None) -> Tuple[dict, str]:
    """Read and check ``json_file`` (once per file version and image root).

    Returns:
        (the parsed file, the absolute image root).
    Raises:
        DatasetFormatError: listing every problem, each with its record and field.
    """
    # stat before reading: a change made meanwhile gives another key, so another check
    st = os.stat(json_file) if os.path.isfile(json_file) else None
    data = read_person_search_json(json_file)  # raises if the file is missing
    root = resolve_image_root(json_file, data, image_root)
    key = (os.path.abspath(json_file), st.st_mtime_ns, st.st_size, root)
    if key not in _CHECKED:
        result = check_person_search_json(data, root)
        if result.problems:
            shown = [str(p) for p in result.problems[:MAX_LISTED_PROBLEMS]]
            more = len(result.problems) - len(shown)
            raise DatasetFormatError(
                f"{json_file}: {len(result.problems)} problem(s) (images under {root}):\n  "
                + "\n  ".join(shown)
                + (
                    f"\n  ... and {more} more (python -m stl_search.data.validate lists all)"
                    if more
                    else ""
                )
            )
        for note in result.notes:
            logger.info("%s: %s", json_file, note)
        _CHECKED.add(key)
    return data, root


def protocol_of(data: dict) -> str:
    """``"cuhk_sysu"`` (per-query gallery lists) or ``"prw"`` (search every gallery image)."""
    return "cuhk_sysu" if any("gallery" in q for q in data.get("queries", [])) else "prw"


def _xyxy(box: Sequence[float]) -> List[float]:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def _image_fields(img: dict, image_root: str) -> dict:
    out = {
        "file_name": os.path.abspath(os.path.join(image_root, img["file_name"])),
        "image_id": img["file_name"],
        "height": img["height"],
        "width": img["width"],
        "camera_id": img.get("camera_id", -1),
    }
    out.update({k: img[k] for k in _PASSED_THROUGH if k in img})
    return out


def json_to_dicts(data: dict, image_root: str) -> Dict[str, List[dict]]:
    """The data set dicts (docs/interfaces.md) of a checked file, by split."""
    images = {img["id"]: img for img in data["images"]}
    annotations: Dict[Any, List[dict]] = {i: [] for i in images}
    for ann in data.get("annotations", []):
        annotations[ann["image_id"]].append(ann)
    train_ids = sorted(
        {
            a["person_id"]
            for img in data["images"]
            if img["split"] == "train"
            for a in annotations[img["id"]]
            if a["person_id"] >= 0
        }
    )
    label_of = {identity: i for i, identity in enumerate(train_ids)}
    out: Dict[str, List[dict]] = {s: [] for s in SPLITS}
    for img in data["images"]:
        if img["split"] == "query":
            continue
        labels = label_of if img["split"] == "train" else {}
        d = _image_fields(img, image_root)
        d["annotations"] = [
            {
                "bbox": _xyxy(a["bbox"]),
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 0,
                "person_id": labels.get(a["person_id"], -1),
                "identity": a["person_id"],
            }
            for a in annotations[img["id"]]
        ]
        out[img["split"]].append(d)
    for i, q in enumerate(data.get("queries", [])):
        d = _image_fields(images[q["image_id"]], image_root)
        d.update(query_box=_xyxy(q["bbox"]), identity=q["person_id"], query_index=i)
        if "gallery" in q:
            d["gallery"] = [
                {
                    "image_id": images[g["image_id"]]["file_name"],
                    "bbox": None if g["bbox"] is None else _xyxy(g["bbox"]),
                }
                for g in q["gallery"]
            ]
        out["query"].append(d)
    return out


def load_person_search_json(
    json_file: str, split: str, image_root: Optional[str] = None
) -> List[dict]:
    """The dicts of one split (``train``, ``gallery`` or ``query``) of a person-search JSON file."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data, root = check_person_search_file(json_file, image_root)
    dicts = json_to_dicts(data, root)[split]
    logger.info(
        "%s (%s): %d %s records",
        json_file,
        split,
        len(dicts),
        "query" if split == "query" else "image",
    )
    return dicts


def _number(v: float) -> Any:
    """Integral values as JSON integers (compact files); others as they are."""
    v = float(v)
    return int(v) if v.is_integer() else v


def _xywh(box: Sequence[float]) -> List[Any]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [_number(x1), _number(y1), _number(x2 - x1), _number(y2 - y1)]


def dicts_to_json(
    train: Sequence[dict], gallery: Sequence[dict], queries: Sequence[dict], image_root: str
) -> dict:
    """The person-search JSON of data set dicts whose ``file_name`` is ``image_root/<image_id>``
    (the inverse of :func:`json_to_dicts`; a query image not among the gallery images becomes an
    image of split ``query``).

    Raises:
        DatasetFormatError: naming the record whose ``image_id`` is not its file's path under
            ``image_root``, or a gallery-list entry naming an image absent from the dicts.
    """
    root = os.path.abspath(image_root)
    images: List[dict] = []
    annotations: List[dict] = []
    id_of: Dict[Tuple[str, str], int] = {}

    def add_image(d: dict, split: str) -> int:
        rel = os.path.relpath(os.path.abspath(d["file_name"]), root)
        if os.path.normpath(rel) != os.path.normpath(str(d["image_id"])):
            raise DatasetFormatError(
                f"{split} record {d['image_id']!r}: file {d['file_name']} is not "
                f"<image_root>/<image_id> (image_root {root})"
            )
        img = {
            "id": len(images),
            "file_name": str(d["image_id"]),
            "height": int(d["height"]),
            "width": int(d["width"]),
            "split": split,
        }
        if d.get("camera_id", -1) != -1:
            img["camera_id"] = int(d["camera_id"])
        img.update({k: d[k] for k in _PASSED_THROUGH if k in d})
        images.append(img)
        id_of[(split, img["file_name"])] = img["id"]
        return img["id"]

    for split, dicts in (("train", train), ("gallery", gallery)):
        for d in dicts:
            image_id = add_image(d, split)
            for a in d["annotations"]:
                annotations.append(
                    {
                        "id": len(annotations),
                        "image_id": image_id,
                        "bbox": _xywh(a["bbox"]),
                        "person_id": int(a["identity"]),
                    }
                )

    def find(image_id: str, where: str) -> int:
        for split in ("gallery", "query", "train"):
            if (split, image_id) in id_of:
                return id_of[(split, image_id)]
        raise DatasetFormatError(f"{where}: image {image_id!r} is not among the data set's images")

    out_queries = []
    for i, q in enumerate(queries):
        key = str(q["image_id"])
        image_id = id_of.get(("gallery", key), id_of.get(("query", key)))
        if image_id is None:
            image_id = add_image(q, "query")
        rec = {
            "id": i,
            "image_id": image_id,
            "bbox": _xywh(q["query_box"]),
            "person_id": int(q["identity"]),
        }
        if "gallery" in q:
            rec["gallery"] = [
                {
                    "image_id": find(str(g["image_id"]), f"query {i} gallery[{j}]"),
                    "bbox": None if g["bbox"] is None else _xywh(g["bbox"]),
                }
                for j, g in enumerate(q["gallery"])
            ]
        out_queries.append(rec)
    return {"images": images, "annotations": annotations, "queries": out_queries}


def write_person_search_json(data: dict, path: str, image_root: Optional[str] = None) -> None:
    """Write ``data`` atomically, one record per line; ``image_root`` is recorded relative to
    the file's folder."""
    data = dict(data)
    if image_root is not None:
        folder = os.path.dirname(os.path.abspath(path))
        data = {"image_root": os.path.relpath(os.path.abspath(image_root), folder), **data}
    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            rows = ",\n".join("    " + json.dumps(r, allow_nan=False) for r in value)
            parts.append(f"  {json.dumps(key)}: [\n{rows}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value, allow_nan=False)}")
    with atomic_open(path, "w") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")


def register_person_search_json(
    name: str, json_file: str, image_root: Optional[str] = None
) -> List[str]:
    """Register ``{name}_train``, ``{name}_gallery`` and ``{name}_query`` of a person-search JSON
    file (the file is checked now; the splits are loaded lazily, as Detectron2's
    ``register_coco_instances`` does).

    Args:
        name: the prefix of the registered names, e.g. ``"myset"``.
        json_file: the file (format: docs/own-data.md).
        image_root: the folder the images' ``file_name`` are relative to; default the file's
            ``image_root`` (relative to the file's folder), else the file's folder.
    Returns:
        the registered names.
    Raises:
        DatasetFormatError: listing every problem of the file.
    """
    json_file = os.path.abspath(json_file)
    data, root = check_person_search_file(json_file, image_root)
    protocol = protocol_of(data)

    def loader(split: str):
        return lambda: load_person_search_json(json_file, split, root)

    description = f"{json_file} (images under {root})"
    return register_linked_splits(
        name,
        description,
        protocol,
        loader("train"),
        loader("gallery"),
        {f"{name}_query": (loader("query"), {})},
    )
