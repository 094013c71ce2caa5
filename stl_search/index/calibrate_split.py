"""``python -m stl_search.index calibrate``: measure an index's similarity threshold on a
labelled split.

The split is a registered query split of Detectron2's ``DatasetCatalog`` (``synthetic_query``,
``prw_query``, ``cuhk_sysu_query``, or ``NAME_query`` of a person-search JSON file given with
``--person-search-json``) and its gallery split (the query split's ``gallery_name``). With the
index's own config and weights (checked by sha256), every gallery image is run through the
detector; a detection takes the identity of the annotated person it overlaps with IoU >= 0.5
(unlabelled persons and unmatched detections are left out). Each query's embedding is compared
with every labelled detection outside its own image: same identity = positive pair, else
negative. :class:`~stl_search.index.calibration.Calibration` turns the counts into the threshold.
"""

from __future__ import annotations

import argparse
from typing import List, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, pairwise_iou

from ..engine.predictor import PersonSearchPredictor
from ..utils.cli import HelpFormatter
from ..utils.progress import Progress
from .arguments import positive_int
from .calibration import Calibration, PairHistogram
from .model import index_predictor
from .shards import read_manifest

__all__ = ["add_calibrate_parser", "run_calibrate", "labelled_detections", "pair_histogram"]


def add_calibrate_parser(sub) -> None:
    """Register ``calibrate`` on the index command's subparsers."""
    p = sub.add_parser(
        "calibrate",
        help="the similarity threshold for a target false-match rate",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--index", required=True, metavar="DIR", help="the index's folder")
    p.add_argument(
        "--dataset",
        default="synthetic_query",
        help="a registered query split (its gallery split is its metadata's gallery_name)",
    )
    p.add_argument(
        "--person-search-json",
        metavar="FILE",
        help="register this person-search JSON file as NAME (the --dataset prefix) first",
    )
    p.add_argument(
        "--target-fpr", type=float, default=1e-3, help="false-match rate the threshold allows"
    )
    p.add_argument("--batch-size", type=positive_int, default=4, help="gallery images per forward")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def labelled_detections(
    predictor: PersonSearchPredictor, gallery: List[dict], batch_size: int, quiet: bool
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(embeddings (M, D), identities (M,), image numbers (M,))`` of the detections that
    overlap a labelled person (IoU >= 0.5, the best such person)."""
    embeddings, identities, images = [], [], []
    progress = Progress(len(gallery), "calibration gallery images", quiet=quiet)
    for start in range(0, len(gallery), batch_size):
        batch = gallery[start : start + batch_size]
        for offset, (record, det) in enumerate(zip(batch, predictor.detect(batch))):
            people = [a for a in record.get("annotations", []) if a.get("identity", -1) >= 0]
            if not people or not len(det):
                continue
            iou = pairwise_iou(
                Boxes(torch.as_tensor(det.boxes, dtype=torch.float32)),
                Boxes(torch.as_tensor([a["bbox"] for a in people], dtype=torch.float32)),
            ).numpy()
            best = iou.argmax(axis=1)
            keep = iou[np.arange(len(best)), best] >= 0.5
            embeddings.append(det.embeddings[keep])
            identities.append(np.array([people[j]["identity"] for j in best[keep]], np.int64))
            images.append(np.full(int(keep.sum()), start + offset, np.int64))
        progress.update(len(batch))
    progress.close()
    if not embeddings:
        raise ValueError("no gallery detection overlaps a labelled person (IoU >= 0.5)")
    return np.concatenate(embeddings), np.concatenate(identities), np.concatenate(images)


def pair_histogram(
    predictor: PersonSearchPredictor,
    queries: List[dict],
    gallery: List[dict],
    batch_size: int = 4,
    quiet: bool = False,
) -> PairHistogram:
    """The positive / negative pair counts of ``queries`` against ``gallery``'s detections."""
    emb, ids, images = labelled_detections(predictor, gallery, batch_size, quiet)
    image_of = {r["image_id"]: i for i, r in enumerate(gallery)}
    hist = PairHistogram()
    progress = Progress(len(queries), "calibration queries", quiet=quiet)
    for q in queries:
        query = predictor.embed_query(q, q["query_box"])
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        outside = images != image_of.get(q["image_id"], -1)
        hist.add(emb[outside] @ query, ids[outside] == q["identity"])
        progress.update()
    progress.close()
    return hist


def run_calibrate(args: argparse.Namespace) -> Calibration:
    manifest = read_manifest(args.index)
    if args.person_search_json:
        from ..data.datasets.person_search_json import (  # noqa: PLC0415  (optional input)
            register_person_search_json,
        )

        name = args.dataset[: -len("_query")] if args.dataset.endswith("_query") else args.dataset
        if f"{name}_query" not in DatasetCatalog.list():
            register_person_search_json(name, args.person_search_json)
        args.dataset = f"{name}_query"
    if args.dataset not in DatasetCatalog.list():
        raise KeyError(f"--dataset {args.dataset} is not a registered data set")
    gallery_name = MetadataCatalog.get(args.dataset).get("gallery_name")
    if not gallery_name:
        raise ValueError(f"--dataset {args.dataset} is not a query split (no gallery_name)")
    predictor = index_predictor(manifest)  # the index's weights, checked by sha256
    hist = pair_histogram(
        predictor,
        DatasetCatalog.get(args.dataset),
        DatasetCatalog.get(gallery_name),
        batch_size=args.batch_size,
        quiet=args.quiet,
    )
    calibration = Calibration.from_histogram(
        hist, args.target_fpr, args.dataset, manifest.get("weights_sha256")
    )
    path = calibration.save(args.index)
    print(
        f"calibration on {args.dataset}: {calibration.num_positive} positive, "
        f"{calibration.num_negative} negative pairs"
    )
    for fpr, tpr in calibration.as_dict()["tpr_at_fpr"].items():
        print(f"  TPR at FPR {fpr:>6}: {tpr:.3f}")
    print(
        f"threshold {calibration.threshold:.4f} (FPR {calibration.threshold_fpr:.2e}, TPR "
        f"{calibration.threshold_tpr:.3f}); saved {path} and calibration.png"
    )
    return calibration
