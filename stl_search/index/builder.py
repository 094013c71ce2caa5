"""Building and extending a gallery index: plan, extract shards in parallel, commit a manifest.

1. :func:`plan_index` (one process): the records of the inputs, cut into shards of
   ``images_per_shard`` consecutive records, written as ``build_plan.json``. The plan, and so each
   shard's content, depends on the inputs, the config and the weights only, never on how many
   processes run: the index of N processes is the index of one.
2. :func:`extract_shards` (every process of Detectron2's ``launch``): the processes split the
   unfinished shards with ``InferenceSampler`` (contiguous, equal shares); each runs its shards'
   images through a ``DataLoader`` in batches of ``batch_size`` (never across shards) and
   :meth:`PersonSearchPredictor.detect_mapped`, and writes each shard when its last batch is done.
   Finished shards of an interrupted run are skipped.
3. :func:`commit_index` (one process): checks every planned shard, hashes it, writes
   ``manifest.json`` and, for an approximate back end, trains or extends ``ann.faiss``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm

from ..engine.predictor import PersonSearchPredictor
from ..engine.setup import load_config
from ..utils.io import atomic_write_json
from ..utils.progress import Progress
from .backends import build_ann
from .shards import (
    FORMAT,
    GalleryIndex,
    read_manifest,
    sha256_of,
    shard_is_done,
    shard_name,
    write_manifest,
    write_shard,
)
from .sources import load_record

__all__ = ["plan_index", "extract_shards", "commit_index", "config_of", "PLAN"]

logger = logging.getLogger(__name__)

PLAN = "build_plan.json"


def config_of(plan_or_manifest: Dict) -> CfgNode:
    """The config an index was built with (stored in its plan and manifest as YAML)."""
    cfg = load_config()
    cfg.merge_from_other_cfg(CfgNode.load_cfg(plan_or_manifest["config"]))
    cfg.freeze()
    return cfg


def plan_index(
    folder: str,
    sources: Sequence[Dict],
    cfg: CfgNode = None,
    images_per_shard: int = 256,
    backend: str = "exact",
    ann_params: Dict = None,
    predictor: PersonSearchPredictor = None,
    embedding_dtype: str = "float16",
) -> Dict:
    """Write ``folder/build_plan.json`` for a new index (``cfg`` given) or for adding ``sources``
    to the index in ``folder`` (``cfg`` None: its manifest's config and weights are used).

    Args:
        sources: ``{"input", "kind" ("images" or "video"), "sample_fps", "records"}`` each, the
            records from :mod:`stl_search.index.sources`.
        predictor: the model will be given to :func:`extract_shards` (``MODEL.WEIGHTS`` may
            then be empty: an in-memory model, not for an index kept on disk).
        embedding_dtype: "float16" (half the disk and memory) or "float32" (the similarities,
            hence the ranking, of the evaluator's default float32 storage, bit for bit).
    """
    if str(np.dtype(embedding_dtype)) not in ("float16", "float32"):
        raise ValueError(f"embedding dtype must be float16 or float32, got {embedding_dtype}")
    if images_per_shard < 1:
        raise ValueError(f"--images-per-shard must be >= 1, got {images_per_shard}")
    if cfg is None:
        plan = read_manifest(folder)
        weights = config_of(plan).MODEL.WEIGHTS
        if not os.path.isfile(weights) or sha256_of(weights) != plan["weights_sha256"]:
            raise ValueError(
                f"the weights {weights} of {folder} are missing or changed since it was built"
            )
    else:
        weights = cfg.MODEL.WEIGHTS
        if not os.path.isfile(weights) and not (predictor is not None and not weights):
            raise FileNotFoundError(f"MODEL.WEIGHTS {weights!r} is not a file")
        if os.path.isfile(os.path.join(folder, "manifest.json")):
            raise FileExistsError(f"{folder} already holds an index: use `add`, or a new folder")
        plan = {
            "format": FORMAT,
            "config": cfg.dump(),
            "weights": cfg.MODEL.WEIGHTS,
            "weights_sha256": sha256_of(weights) if weights else None,
            "images_per_shard": int(images_per_shard),
            "score_thresh": float(cfg.TEST.PERSON_SEARCH.SCORE_THRESH),
            "embedding_dtype": str(np.dtype(embedding_dtype)),
            "backend": backend,
            "ann_params": dict(ann_params or {}),
            "ann": None,
            "sources": [],
            "shards": [],
        }
    number = len(plan["shards"])
    for source in sources:
        records = list(source["records"])
        plan["sources"].append(
            {k: source[k] for k in ("input", "kind", "sample_fps")} | {"num_records": len(records)}
        )
        for start in range(0, len(records), plan["images_per_shard"]):
            chunk = records[start : start + plan["images_per_shard"]]
            plan["shards"].append({"name": shard_name(number), "number": number, "records": chunk})
            number += 1
    if "index_id" not in plan:
        text = json.dumps(plan, sort_keys=True).encode()
        plan["index_id"] = hashlib.sha256(text).hexdigest()[:16]
    os.makedirs(folder, exist_ok=True)
    atomic_write_json(plan, os.path.join(folder, PLAN))
    return plan


def _read_plan(folder: str) -> Dict:
    with open(os.path.join(folder, PLAN)) as f:
        return json.load(f)


def _pending(folder: str, plan: Dict) -> List[Dict]:
    return [
        s
        for s in plan["shards"]
        if "sha256" not in s
        and not shard_is_done(folder, s["number"], plan["index_id"], s["records"])
    ]


class _MapRecord:
    """Record -> gallery-mapper output (picklable for data-loader workers)."""

    def __init__(self, mapper, image_format: str):
        self.mapper, self.image_format = mapper, image_format

    def __call__(self, record: Dict) -> Dict:
        return self.mapper(load_record(record, self.image_format))


def extract_shards(
    folder: str,
    batch_size: int = 4,
    num_workers: int = 0,
    predictor: PersonSearchPredictor = None,
) -> int:
    """This process's share of the unfinished shards of ``folder/build_plan.json``; returns how
    many shards it wrote. Call it in every process (it synchronises them at the end). The
    model is built from the plan's config and weights unless ``predictor`` is given."""
    plan = _read_plan(folder)
    pending = _pending(folder, plan)
    mine = [pending[i] for i in InferenceSampler(len(pending))] if pending else []
    logger.info(
        "Index %s: %d of %d shards to extract, %d by this process",
        folder,
        len(pending),
        len(plan["shards"]),
        len(mine),
    )
    if mine:
        predictor = predictor or PersonSearchPredictor(config_of(plan))
        _extract(predictor, folder, plan, mine, batch_size, num_workers)
    comm.synchronize()
    return len(mine)


def _extract(predictor, folder, plan, shards, batch_size: int, num_workers: int) -> None:
    records, batches, owner = [], [], []
    for i, shard in enumerate(shards):
        first = len(records)
        records.extend(shard["records"])
        for b in range(first, len(records), batch_size):
            batches.append(list(range(b, min(b + batch_size, len(records)))))
            owner.append(i)
    dataset = MapDataset(
        DatasetFromList(records, copy=False),
        _MapRecord(predictor.gallery_mapper, predictor.input_format),
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=trivial_batch_collator,
        num_workers=num_workers,
    )
    thresh = float(plan["score_thresh"])
    done = {i: [] for i in range(len(shards))}
    progress = Progress(len(records), "images (this process)", quiet=not comm.is_main_process())
    for batch, i in zip(loader, owner):
        done[i].extend(predictor.detect_mapped(batch))
        progress.update(len(batch))
        shard = shards[i]
        if len(done[i]) == len(shard["records"]):
            dets = done.pop(i)
            keeps = [d.scores >= thresh for d in dets]
            write_shard(
                folder,
                shard["number"],
                plan["index_id"],
                shard["records"],
                boxes=np.concatenate([d.boxes[k] for d, k in zip(dets, keeps)]),
                scores=np.concatenate([d.scores[k] for d, k in zip(dets, keeps)]),
                record_rows=np.concatenate(
                    [np.full(int(k.sum()), row) for row, k in enumerate(keeps)]
                ),
                embeddings=np.concatenate([d.embeddings[k] for d, k in zip(dets, keeps)]),
                embedding_dtype=plan.get("embedding_dtype", "float16"),
            )
            logger.info("Index %s: wrote %s", folder, shard["name"])
    progress.close()


def commit_index(folder: str) -> Dict:
    """Check that every planned shard is finished; write the manifest (and the ANN index)."""
    plan = _read_plan(folder)
    missing = [s["name"] for s in _pending(folder, plan)]
    if missing:
        raise RuntimeError(f"{folder}: shards {missing} were not extracted; run the command again")
    manifest = {k: v for k, v in plan.items() if k != "shards"}
    manifest["shards"] = []
    previous_boxes = 0
    for shard in plan["shards"]:
        if "sha256" in shard:  # committed by an earlier build or add
            manifest["shards"].append(shard)
            previous_boxes += shard["num_boxes"]
            continue
        base = os.path.join(folder, shard["name"])
        embeddings = np.load(base + ".emb.npy", mmap_mode="r", allow_pickle=False)
        manifest["embedding_dim"] = int(embeddings.shape[1])
        manifest["shards"].append(
            {
                "name": shard["name"],
                "number": shard["number"],
                "num_records": len(shard["records"]),
                "num_boxes": int(embeddings.shape[0]),
                "sha256": sha256_of(base + ".npz"),
                "embeddings_sha256": sha256_of(base + ".emb.npy"),
            }
        )
    if "embedding_dim" not in manifest:
        raise RuntimeError(f"{folder}: no shard to commit")
    ann_before = manifest.get("ann")
    manifest["ann"] = None
    write_manifest(folder, manifest)
    if manifest["backend"] != "exact":
        gallery = GalleryIndex.open(folder, verify=False)
        start = previous_boxes if ann_before else 0
        params = ann_before or manifest["ann_params"]
        manifest["ann"] = build_ann(gallery, manifest["backend"], params, start=start)
        write_manifest(folder, manifest)
    os.remove(os.path.join(folder, PLAN))
    return manifest
