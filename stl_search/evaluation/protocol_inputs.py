"""From Detectron2 data set dicts and the evaluator's collected predictions to the arrays of the
protocol core (:mod:`.galleries`, :mod:`.detection`, :mod:`.search_metrics`).

Pure functions (no catalog look-up, no I/O): the evaluator fetches the dicts and passes them in.
Gallery dicts follow ``../../docs/interfaces.md`` (``image_id``, ``camera_id``, ``annotations``
with ``bbox``/``bbox_mode``/``identity``); query dicts have ``query_index``, ``image_id``,
``identity``, ``query_box`` and, for CUHK-SYSU, their ``gallery`` listings. The protocol is
described in ``../../docs/protocol.md``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import List, Mapping, Sequence, Tuple

import numpy as np
from detectron2.structures import BoxMode

from .galleries import (
    CBGMContext,
    GalleryDetections,
    QueryGalleries,
    explicit_galleries,
    prw_galleries,
    query_context_from_gallery,
)

logger = logging.getLogger(__name__)

#: Collected detections of one gallery image: ``(boxes (n, 4), scores (n,), embeddings (n, D))``.
ImageDetections = Tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class GalleryTruth:
    """Ground truth of the gallery split, CSR by image (``splits``), in data set order."""

    boxes: np.ndarray  # (G, 4) XYXY float64
    identities: np.ndarray  # (G,) int64, -1 unlabeled
    splits: np.ndarray  # (I + 1,)
    cameras: np.ndarray  # (I,) camera of each image, -1 unknown


def _xyxy(box, mode) -> List[float]:
    if mode is None or mode == BoxMode.XYXY_ABS:
        return [float(v) for v in box]
    return [float(v) for v in BoxMode.convert(list(box), mode, BoxMode.XYXY_ABS)]


def gallery_arrays(
    gallery_dicts: Sequence[dict],
    predictions: Mapping[str, ImageDetections],
    query_embeddings: Mapping[int, np.ndarray],
    feature_dtype: np.dtype,
) -> Tuple[GalleryDetections, GalleryTruth]:
    """Detections (data set order; an image without predictions has none) and ground truth of the
    gallery split. The embedding width comes from the detections, else from the queries."""
    image_ids = [str(d["image_id"]) for d in gallery_dicts]
    dim = next((e.shape[1] for _, _, e in predictions.values() if e.ndim == 2 and e.shape[1]), None)
    if dim is None:
        dim = next((len(v) for v in query_embeddings.values()), 0)
    missing = [k for k in image_ids if k not in predictions]
    if missing:
        logger.warning(
            "%d of %d gallery images have no predictions: treated as no detections",
            len(missing),
            len(image_ids),
        )
    empty = (
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.float32),
        np.zeros((0, dim), feature_dtype),
    )
    parts = [predictions.get(k, empty) for k in image_ids]
    counts = np.array([len(p[1]) for p in parts], dtype=np.int64)
    gallery = GalleryDetections(
        boxes=np.concatenate([p[0] for p in parts]) if parts else empty[0],
        scores=np.concatenate([p[1] for p in parts]) if parts else empty[1],
        embeddings=np.concatenate([p[2].reshape(-1, dim) for p in parts]) if parts else empty[2],
        splits=np.r_[0, np.cumsum(counts)].astype(np.int64),
    )
    boxes, idents, gt_counts = [], [], []
    for d in gallery_dicts:
        anns = d.get("annotations", [])
        gt_counts.append(len(anns))
        for a in anns:
            boxes.append(_xyxy(a["bbox"], a.get("bbox_mode")))
            idents.append(int(a.get("identity", -1)))
    truth = GalleryTruth(
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        identities=np.array(idents, dtype=np.int64),
        splits=np.r_[0, np.cumsum(gt_counts)].astype(np.int64),
        cameras=np.array([d.get("camera_id", -1) for d in gallery_dicts], dtype=np.int64),
    )
    return gallery, truth


def query_matrix(
    query_dicts: Sequence[dict], query_embeddings: Mapping[int, np.ndarray], dim: int, name: str
) -> np.ndarray:
    """``(Q, D)`` float32 embeddings in the order of ``query_dicts`` (split ``name``); a missing
    one is an error naming the split and the first missing ``query_index``."""
    missing = [
        d["query_index"] for d in query_dicts if int(d["query_index"]) not in query_embeddings
    ]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(query_dicts)} queries of {name} have no embedding "
            f"(first: query_index {missing[0]}); run the query split through the model's "
            "query mode"
        )
    if not query_dicts:
        return np.zeros((0, dim), np.float32)
    return np.stack([query_embeddings[int(d["query_index"])] for d in query_dicts]).astype(
        np.float32
    )


def query_images(query_dicts: Sequence[dict], id_to_index: Mapping[str, int]) -> np.ndarray:
    """``(Q,)`` gallery index of each query's frame, ``-1`` when it is not a gallery frame."""
    return np.array([id_to_index.get(str(d["image_id"]), -1) for d in query_dicts], dtype=np.int64)


def prw_protocols(
    query_dicts: Sequence[dict], q_images: np.ndarray, truth: GalleryTruth, modes: Sequence[str]
) -> List[QueryGalleries]:
    """The PRW galleries of each mode ("all", "multi_view"), named by the mode."""
    identities = np.array([d["identity"] for d in query_dicts], dtype=np.int64)
    cameras = np.array([d.get("camera_id", -1) for d in query_dicts], dtype=np.int64)
    return [
        prw_galleries(
            q_images,
            identities,
            cameras,
            truth.cameras,
            truth.identities,
            truth.boxes,
            truth.splits,
            mode=mode,
            name=mode,
        )
        for mode in modes
    ]


def full_gallery_protocol(
    query_dicts: Sequence[dict], q_images: np.ndarray, truth: GalleryTruth
) -> QueryGalleries:
    """CUHK-SYSU's full gallery ("gfull"): every gallery image but the query's own, targets from
    the annotations; cameras play no role."""
    identities = np.array([d["identity"] for d in query_dicts], dtype=np.int64)
    no_camera = np.full(len(query_dicts), -1, dtype=np.int64)
    return prw_galleries(
        q_images,
        identities,
        no_camera,
        np.full(truth.cameras.size, -1, dtype=np.int64),
        truth.identities,
        truth.boxes,
        truth.splits,
        mode="all",
        name="gfull",
    )


def cuhk_protocol(
    name: str,
    size_dicts: Sequence[dict],
    query_dicts: Sequence[dict],
    id_to_index: Mapping[str, int],
    gallery_name: str,
    query_name: str,
) -> Tuple[str, QueryGalleries]:
    """One CUHK-SYSU gallery size (query split ``name`` with dicts ``size_dicts``): its explicit
    per-query lists, aligned to the queries the model ran (``query_dicts`` of split
    ``query_name``). Returns ``("g<size>", galleries)``."""
    sdicts, qdicts = size_dicts, query_dicts
    row_of = {int(d["query_index"]): i for i, d in enumerate(qdicts)}
    if len(sdicts) != len(qdicts) or any(
        row_of.get(int(s["query_index"])) != i or str(s["image_id"]) != str(qdicts[i]["image_id"])
        for i, s in enumerate(sdicts)
    ):
        raise ValueError(
            f"query set {name} does not hold the queries of {query_name} in the same order"
        )
    m = re.search(r"_g(\d+)$", name)
    size = int(m.group(1)) if m else (len(sdicts[0]["gallery"]) if sdicts else 0)
    counts = [len(d["gallery"]) for d in sdicts]
    listing_images = np.array(
        [id_to_index.get(str(g["image_id"]), -1) for d in sdicts for g in d["gallery"]],
        dtype=np.int64,
    )
    boxes, target_listings = [], []
    i = 0
    for d in sdicts:
        for g in d["gallery"]:
            if g.get("bbox") is not None:
                target_listings.append(i)
                boxes.append([float(v) for v in g["bbox"]])
            i += 1
    unknown = int((listing_images < 0).sum())
    if unknown:
        logger.warning(
            "%s: %d gallery listings name images outside %s (no detections)",
            name,
            unknown,
            gallery_name,
        )
    galleries = explicit_galleries(
        np.r_[0, np.cumsum(counts)].astype(np.int64),
        listing_images,
        np.array(target_listings, dtype=np.int64),
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        name=f"g{size}",
    )
    return f"g{size}", galleries


def cbgm_context(
    gallery: GalleryDetections,
    query_dicts: Sequence[dict],
    q_images: np.ndarray,
    k1: int,
    k2: int,
    score_thresh: float,
) -> CBGMContext:
    """CBGM inputs: each query frame's context persons from its gallery detections."""
    boxes = np.array([d["query_box"] for d in query_dicts], dtype=np.float64).reshape(-1, 4)
    context = query_context_from_gallery(gallery, q_images, boxes, k2, score_thresh)
    return replace(context, k1=k1)
