"""PRW (Person Re-identification in the Wild, Zheng et al. 2017) in its distributed format.

Layout of ``root`` (``PRW-v16.04.20/``)::

    frames/c{cam}s{seq}_{frame}.jpg        scene frames (6 cameras)
    annotations/{frame}.jpg.mat            N x 5 [pid, x, y, w, h] under ``box_new``
                                           (a few files: ``anno_file`` or ``anno_previous``)
    frame_train.mat                        ``img_index_train``: cell of frame names (no extension)
    frame_test.mat                         ``img_index_test``
    query_info.txt                         ``pid x y w h frame_name_without_ext``, CRLF lines
    ID_train.mat, ID_test.mat              identity lists (``ID_train``; ``ID_test``/``ID_test2``)

Box rules (those of the evaluation code every published PRW number uses, see
``docs/protocol.md``):

- frame annotations: clip ``x, y, w, h`` at 0, then ``x2 = x + w``, ``y2 = y + h``, then truncate
  all four to int. Boxes with ``w <= 0`` or ``h <= 0`` (or empty after truncation) are dropped
  and counted in the log.
- query boxes: ``x2 = x + w``, ``y2 = y + h``, then clip at 0, then truncate to int.
- a frame box entirely outside its frame (it would become a box in the frame's corner after
  clipping) is dropped and counted in the log; a query box entirely outside its frame is an
  error. NaN / infinite numbers, strings where numbers belong and fractional or out-of-int64
  pids are errors naming the file, the row (line) and the field.

Identities: ``pid == -2`` marks an unlabeled person (``identity = person_id = -1``). Training
labels ``person_id`` are contiguous over *every* pid >= 0 found in the training frames, in
increasing pid order. The real files have 483 training identities (1..478, 480..483 and 932);
the SeqNet family trains 482 classes (an off-by-one that leaves one identity out); we train all
483. ``ID_train.mat``, when present, is checked against the pids of the frames (differences are
logged). In the gallery split ``person_id`` is -1 everywhere and ``identity`` is the raw pid.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
from detectron2.structures import BoxMode

from .common import (
    DatasetFormatError,
    cell_strings,
    count_log,
    finite_number,
    image_size,
    load_mat,
    mat_vector,
    outside_frame,
    person_id,
    require_file,
)

logger = logging.getLogger(__name__)

__all__ = ["load_prw_scenes", "load_prw_queries", "prw_camera_id", "read_prw_id_list", "PRW_LAYOUT"]

PRW_LAYOUT = (
    "<root>/frames/c{cam}s{seq}_{frame}.jpg, "
    "<root>/annotations/<frame>.jpg.mat (box_new | anno_file | anno_previous: N x 5 "
    "[pid x y w h]), <root>/frame_train.mat (img_index_train), "
    "<root>/frame_test.mat (img_index_test), <root>/query_info.txt, <root>/ID_train.mat"
)
ANNOTATION_KEYS = ("box_new", "anno_file", "anno_previous")
ANNOTATION_FIELDS = ("pid", "x", "y", "w", "h")
UNLABELED_PID = -2
_NAME_RE = re.compile(r"^c(\d+)s(\d+)_(\d+)")
_SPLIT_FILES = {
    "train": ("frame_train.mat", "img_index_train"),
    "gallery": ("frame_test.mat", "img_index_test"),
}


def prw_camera_id(image_name: str) -> int:
    """The camera number ``k`` of a PRW frame name ``c{k}s{seq}_{frame}[.jpg]``."""
    m = _NAME_RE.match(os.path.basename(image_name))
    if m is None:
        raise DatasetFormatError(
            f"PRW frame name {image_name!r} does not match c<cam>s<seq>_<frame>.jpg"
        )
    return int(m.group(1))


def read_split_names(root: str, split: str) -> List[str]:
    """Frame names (without extension) of the ``train`` or ``gallery`` (test) split, in file
    order."""
    if split not in _SPLIT_FILES:
        raise ValueError(f"PRW split must be one of {sorted(_SPLIT_FILES)}, got {split!r}")
    fname, key = _SPLIT_FILES[split]
    path = os.path.join(root, fname)
    names = cell_strings(load_mat(path, [key], PRW_LAYOUT), f"{path}:{key}")
    return [n[:-4] if n.endswith(".jpg") else n for n in names]


def read_prw_id_list(root: str, split: str) -> Optional[List[int]]:
    """The identities listed in ``ID_train.mat`` / ``ID_test.mat``; None if the file is absent."""
    fname, keys = {
        "train": ("ID_train.mat", ["ID_train"]),
        "test": ("ID_test.mat", ["ID_test", "ID_test2"]),
    }[split]
    path = os.path.join(root, fname)
    if not os.path.isfile(path):
        return None
    values = mat_vector(load_mat(path, keys, PRW_LAYOUT), path)
    return [person_id(v, f"{path}: entry {i}") for i, v in enumerate(values)]


def read_annotation(root: str, image_name: str) -> np.ndarray:
    """The ``N x 5`` float array ``[pid, x, y, w, h]`` of one frame (``image_name`` with .jpg).

    Every value is finite and every pid an integer within int64; otherwise
    :class:`DatasetFormatError` names the file, the row (from 1) and the field.
    """
    path = os.path.join(root, "annotations", image_name + ".mat")
    raw = load_mat(path, ANNOTATION_KEYS, PRW_LAYOUT)
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(
            f"{path}: expected an N x 5 numeric array [pid, x, y, w, h], got "
            f"{getattr(raw, 'dtype', type(raw).__name__)} ({e})"
        ) from e
    if arr.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise DatasetFormatError(
            f"{path}: expected an N x 5 array [pid, x, y, w, h], got shape {arr.shape}"
        )
    not_finite = np.argwhere(~np.isfinite(arr))
    if len(not_finite):
        row, col = not_finite[0]
        raise DatasetFormatError(
            f"{path}: row {row + 1}, field {ANNOTATION_FIELDS[col]}: {arr[row, col]} is not a "
            "finite number"
        )
    for row, pid in enumerate(arr[:, 0]):
        person_id(pid, f"{path}: row {row + 1}, field pid")
    return arr


def frame_box(x: float, y: float, w: float, h: float) -> Optional[List[float]]:
    """A frame annotation ``x, y, w, h`` as XYXY (clip at 0, add, truncate); None if degenerate."""
    if w <= 0 or h <= 0:
        return None
    x, y, w, h = (max(v, 0.0) for v in (x, y, w, h))
    box = [float(int(x)), float(int(y)), float(int(x + w)), float(int(y + h))]
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def query_box(x: float, y: float, w: float, h: float) -> Optional[List[float]]:
    """A ``query_info.txt`` box as XYXY (add, clip at 0, truncate); None if degenerate."""
    if w <= 0 or h <= 0:
        return None
    box = [float(int(max(v, 0.0))) for v in (x, y, x + w, y + h)]
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def load_prw_scenes(root: str, split: str) -> List[dict]:
    """Detectron2 dicts of the PRW ``train`` or ``gallery`` frames (format: docs/interfaces.md).

    In ``train``, ``person_id`` is the contiguous training label (see the module docstring);
    in ``gallery`` it is -1 and ``identity`` carries the raw pid.
    """
    names = read_split_names(root, split)
    dropped = {
        "non-positive width or height": 0,
        "entirely outside the frame": 0,
        "empty after clipping and truncation": 0,
    }
    frames_dir = os.path.join(root, "frames")
    records: List[Tuple[str, int, Tuple[int, int], List[Tuple[List[float], int]]]] = []
    other_negative = 0
    for name in names:
        image_id = name + ".jpg"
        arr = read_annotation(root, image_id)
        height, width = image_size(os.path.join(frames_dir, image_id))
        boxes = []
        for pid, x, y, w, h in arr:
            if w <= 0 or h <= 0:
                dropped["non-positive width or height"] += 1
                continue
            if outside_frame(x, y, w, h, height, width):
                dropped["entirely outside the frame"] += 1
                continue
            box = frame_box(x, y, w, h)
            if box is None:
                dropped["empty after clipping and truncation"] += 1
                continue
            pid = int(pid)  # an integer within int64, checked by read_annotation
            if pid < 0 and pid != UNLABELED_PID:
                other_negative += 1
            boxes.append((box, pid if pid >= 0 else -1))
        records.append((image_id, prw_camera_id(image_id), (height, width), boxes))
    if other_negative:
        logger.warning(
            "PRW %s (%s): %d boxes have a negative pid other than -2; treated as unlabeled",
            split,
            root,
            other_negative,
        )

    label_of: Dict[int, int] = {}
    if split == "train":
        pids = sorted({pid for _, _, _, boxes in records for _, pid in boxes if pid >= 0})
        label_of = {pid: i for i, pid in enumerate(pids)}
        _check_id_list(root, pids)

    dicts = []
    num_boxes = 0
    for image_id, cam, (height, width), boxes in records:
        file_name = os.path.join(frames_dir, image_id)
        annos = [
            {
                "bbox": box,
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 0,
                "person_id": label_of.get(pid, -1),
                "identity": pid,
            }
            for box, pid in boxes
        ]
        num_boxes += len(annos)
        dicts.append(
            {
                "file_name": os.path.abspath(file_name),
                "image_id": image_id,
                "height": height,
                "width": width,
                "camera_id": cam,
                "annotations": annos,
            }
        )
    count_log(f"PRW {split} ({root})", len(dicts), num_boxes, dropped)
    if split == "train":
        logger.info("PRW train (%s): %d training identities", root, len(label_of))
    return dicts


def _check_id_list(root: str, pids: List[int]) -> None:
    listed = read_prw_id_list(root, "train")
    if listed is None:
        logger.info(
            "PRW: %s not found; training identities taken from the annotations",
            os.path.join(root, "ID_train.mat"),
        )
        return
    only_list = sorted(set(listed) - set(pids))
    only_frames = sorted(set(pids) - set(listed))
    if only_list or only_frames:
        logger.warning(
            "PRW: ID_train.mat and the training annotations differ: only in ID_train.mat %s, "
            "only in the frames %s; labels follow the frames",
            only_list[:20],
            only_frames[:20],
        )


def load_prw_queries(root: str) -> List[dict]:
    """Query dicts from ``query_info.txt`` (any line ending), in file order; ``query_index`` is
    the position in the returned list."""
    path = require_file(os.path.join(root, "query_info.txt"), PRW_LAYOUT)
    with open(path, "rb") as f:
        raw_lines = f.read().splitlines()
    frames_dir = os.path.join(root, "frames")
    queries = []
    dropped = 0
    for line_no, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetFormatError(
                f"{path}:{line_no}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                f"{e.start + 1})"
            ) from e
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise DatasetFormatError(
                f"{path}:{line_no}: expected 'pid x y w h frame_name', got {line.strip()!r}"
            )
        pid = person_id(fields[0], f"{path}:{line_no}: field pid")
        x, y, w, h = (
            finite_number(v, f"{path}:{line_no}: field {n}")
            for v, n in zip(fields[1:5], ANNOTATION_FIELDS[1:])
        )
        box = query_box(x, y, w, h)
        if box is None:
            dropped += 1
            continue
        name = fields[5]
        image_id = name if name.endswith(".jpg") else name + ".jpg"
        file_name = os.path.join(frames_dir, image_id)
        height, width = image_size(file_name)
        if outside_frame(x, y, w, h, height, width):
            raise DatasetFormatError(
                f"{path}:{line_no}: query box x={x} y={y} w={w} h={h} lies entirely outside "
                f"its frame {image_id} ({width}x{height})"
            )
        queries.append(
            {
                "file_name": os.path.abspath(file_name),
                "image_id": image_id,
                "height": height,
                "width": width,
                "camera_id": prw_camera_id(image_id),
                "query_box": box,
                "identity": pid,
                "query_index": len(queries),
            }
        )
    count_log(f"PRW query ({root})", len(queries), len(queries), {"degenerate query box": dropped})
    return queries
