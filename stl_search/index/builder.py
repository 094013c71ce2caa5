"""Building and extending a gallery index: plan, extract shards in parallel, commit a manifest.

1. :func:`plan_index` (one process): the records of the inputs, cut into shards of
   ``images_per_shard`` consecutive records, written as ``build_plan.json``; every parameter
   (approximate back end included) is checked here, before any extraction. The plan, and so each
   shard's content, depends on the inputs, the config and the weights only, never on how many
   processes run: the index of N processes is the index of one. An ``add`` whose plan is still
   there (it failed) resumes from it when run again; sources already in the index are refused.
2. :func:`extract_shards` (every process of Detectron2's ``launch``): the processes split the
   unfinished shards with ``InferenceSampler`` (contiguous, equal shares); each runs its shards'
   images through a ``DataLoader`` in batches of ``batch_size`` (never across shards) and
   :meth:`PersonSearchPredictor.detect_mapped`, checks that every box, score and embedding is
   finite, and writes each shard when its last batch is done. Finished shards are skipped.
3. :func:`commit_index` (one process): checks every planned shard, hashes it, trains or extends
   the approximate index into a new file, then writes ``manifest.json``, the one commit point,
   and removes the plan.
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
from ..export.predictor import exported_predictor
from ..utils.io import sha256_of
from ..utils.progress import Progress
from .backends import GalleryTooSmall, ann_params, build_ann, remove_stale_ann_files
from .manifest import (
    FORMAT,
    PLAN,
    read_manifest,
    read_plan,
    shard_name,
    write_manifest,
    write_plan,
)
from .model import config_of, index_predictor, resolve_weights
from .shards import GalleryIndex, shard_is_done, shard_records, write_shard
from .sources import load_record

__all__ = ["plan_index", "extract_shards", "commit_index", "set_backend", "PLAN"]

logger = logging.getLogger(__name__)


def plan_index(
    folder: str,
    sources: Sequence[Dict],
    cfg: CfgNode = None,
    images_per_shard: int = 256,
    backend: str = "exact",
    ann_params: Dict = None,
    predictor: PersonSearchPredictor = None,
    embedding_dtype: str = "float16",
    weights: str = None,
) -> Dict:
    """Write ``folder/build_plan.json`` for a new index (``cfg`` given) or for adding ``sources``
    to the index in ``folder`` (``cfg`` None: its manifest's config and weights are used).

    Args:
        sources: ``{"input", "kind" ("images" or "video"), "sample_fps", "records"}`` each, the
            records from :mod:`stl_search.index.sources`.
        ann_params: ``backend``'s parameters (``--ann-param`` strings or numbers).
        predictor: the model will be given to :func:`extract_shards` (``MODEL.WEIGHTS`` may
            then be empty: an in-memory model, not for an index kept on disk).
        embedding_dtype: "float16" (half the disk and memory) or "float32" (the similarities,
            hence the ranking, of the evaluator's default float32 storage, bit for bit).
        weights: for an add, the index's weights at another path (checked by sha256).
    """
    sources = [dict(s, records=list(s["records"])) for s in sources]
    if cfg is None:
        plan = _add_plan(folder, sources, weights)
        if "planned_from" in plan:
            return plan  # the unfinished add of these sources, resumed
    else:
        plan = _build_plan(folder, sources, cfg, images_per_shard, backend, ann_params, predictor)
        plan["embedding_dtype"] = _dtype(embedding_dtype)
    plan["planned_from"] = {"sources": len(plan["sources"]), "shards": len(plan["shards"])}
    number = len(plan["shards"])
    for source in sources:
        records = source["records"]
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
    write_plan(folder, plan)
    return plan


def _dtype(embedding_dtype: str) -> str:
    if str(np.dtype(embedding_dtype)) not in ("float16", "float32"):
        raise ValueError(f"embedding dtype must be float16 or float32, got {embedding_dtype}")
    return str(np.dtype(embedding_dtype))


def _build_plan(folder, sources, cfg, images_per_shard, backend, params, predictor) -> Dict:
    if images_per_shard < 1:
        raise ValueError(f"--images-per-shard must be >= 1, got {images_per_shard}")
    records = sum(len(s["records"]) for s in sources)
    params = ann_params(
        backend,
        params,
        dim=cfg.MODEL.ID_HEAD.EMBEDDING_DIM,
        max_boxes=records * cfg.TEST.DETECTIONS_PER_IMAGE,
    )
    weights = cfg.MODEL.WEIGHTS
    if not os.path.isfile(weights) and not (predictor is not None and not weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS {weights!r} is not a file")
    if os.path.isfile(os.path.join(folder, "manifest.json")):
        raise FileExistsError(f"{folder} already holds an index: use `add`, or a new folder")
    return {
        "format": FORMAT,
        "config": cfg.dump(),
        "weights": os.path.abspath(weights) if weights else None,
        "weights_sha256": sha256_of(weights) if weights else None,
        "images_per_shard": int(images_per_shard),
        "score_thresh": float(cfg.TEST.PERSON_SEARCH.SCORE_THRESH),
        "backend": backend,
        "ann_params": params,
        "ann": None,
        "sources": [],
        "shards": [],
    }


def _add_plan(folder: str, sources: List[Dict], weights: str) -> Dict:
    """The manifest of ``folder`` to extend, or its unfinished plan for the same ``sources``."""
    manifest = read_manifest(folder)
    weights = resolve_weights(manifest, weights)
    if os.path.isfile(os.path.join(folder, PLAN)):
        plan = read_plan(folder)
        if len(plan["shards"]) == len(manifest["shards"]):  # committed, then interrupted
            os.remove(os.path.join(folder, PLAN))
            return _add_plan(folder, sources, weights)
        start = plan.get("planned_from") or {}
        planned = [r for s in plan["shards"][start.get("shards", 0) :] for r in s["records"]]
        inputs = [s["input"] for s in plan["sources"][start.get("sources", 0) :]]
        if planned != [r for s in sources for r in s["records"]]:
            raise FileExistsError(
                f"{folder} holds an unfinished add of {inputs}: run that command again to finish "
                f"it (or delete {os.path.join(folder, PLAN)} to drop it)"
            )
        plan["weights"] = weights
        write_plan(folder, plan)
        logger.info("Index %s: resuming the unfinished add of %s", folder, inputs)
        return plan
    indexed = set()
    for entry in manifest["shards"]:
        indexed |= shard_records(folder, entry["number"])
    for source in sources:
        again = [
            r
            for r in source["records"]
            if (os.path.abspath(r["file_name"]), int(r["frame_index"])) in indexed
        ]
        if again:
            raise ValueError(
                f"{source['input']}: {len(again)} of its {len(source['records'])} images or "
                f"frames are already in the index {folder} (e.g. {again[0]['file_name']}); add "
                "only new ones"
            )
    manifest.pop("planned_from", None)
    return dict(manifest, weights=weights)


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
    export_dir: str = None,
    num_threads: int = None,
    quiet: bool = False,
) -> int:
    """This process's share of the unfinished shards of ``folder/build_plan.json``; returns how
    many shards it wrote. Call it in every process (it synchronises them at the end). The
    model is built from the plan's config and weights unless ``predictor`` is given; with
    ``export_dir``, the export there runs instead (refused unless made from the plan's weights,
    by sha256; ``num_threads``: onnxruntime's). Progress lines come from the main process only,
    and not at all with ``quiet``."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    plan = read_plan(folder)
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
        if predictor is None and export_dir:
            predictor = exported_predictor(
                config_of(plan), export_dir, plan["weights_sha256"], num_threads
            )
        predictor = predictor or index_predictor(plan)
        _extract(predictor, folder, plan, mine, batch_size, num_workers, quiet)
    comm.synchronize()
    return len(mine)


def _extract(
    predictor, folder, plan, shards, batch_size: int, num_workers: int, quiet: bool
) -> None:
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
    progress = Progress(
        len(records), "images (this process)", quiet=quiet or not comm.is_main_process()
    )
    for batch, i in zip(loader, owner):
        done[i].extend(predictor.detect_mapped(batch))
        progress.update(len(batch))
        shard = shards[i]
        if len(done[i]) == len(shard["records"]):
            dets = done.pop(i)
            for det, record in zip(dets, shard["records"]):
                _check_finite(det, record)
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
                embedding_dtype=plan["embedding_dtype"],
            )
            logger.info("Index %s: wrote %s", folder, shard["name"])
    progress.close()


def _check_finite(detections, record: Dict) -> None:
    """Refuse NaN or infinite model outputs (broken weights) before they enter a shard, where
    they would match nothing, silently."""
    for field in ("boxes", "scores", "embeddings"):
        if not np.isfinite(getattr(detections, field)).all():
            where = record["file_name"]
            if record["frame_index"] >= 0:
                where += f" frame {record['frame_index']}"
            raise ValueError(
                f"{where}: the model gave non-finite {field} (NaN or inf); check MODEL.WEIGHTS"
            )


def commit_index(folder: str) -> Dict:
    """Check that every planned shard is finished, hash the new ones, train or extend the
    approximate index, and write the manifest (the commit) and remove the plan.

    Raises:
        GalleryTooSmall: the approximate back end asked for at ``build`` needs more boxes than
            were found; the index is then committed with the exact back end (the message says
            how to train one on its shards with ``train``).
    """
    plan = read_plan(folder)
    missing = [s["name"] for s in _pending(folder, plan)]
    if missing:
        raise RuntimeError(f"{folder}: shards {missing} were not extracted; run the command again")
    manifest = {k: v for k, v in plan.items() if k not in ("shards", "planned_from")}
    manifest["shards"] = []
    for shard in plan["shards"]:
        if "sha256" in shard:  # committed by an earlier build or add
            manifest["shards"].append(shard)
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
    too_small = None
    if manifest.get("ann_params"):
        gallery = GalleryIndex.open(folder, verify=False, manifest=manifest)
        try:
            manifest["ann"] = build_ann(
                gallery, manifest["backend"], manifest["ann_params"], base=plan["ann"]
            )
        except GalleryTooSmall as e:
            if plan["ann"]:
                raise
            manifest["backend"], too_small = "exact", e
    _commit(folder, manifest)
    if too_small:
        raise GalleryTooSmall(
            f"{folder}: {too_small}. Its boxes were indexed and are searched exactly; once it "
            f"holds enough (`add`), or with smaller --ann-param values, build the approximate "
            f"index on its shards with `python -m stl_search.index train --index {folder} "
            f"--backend {plan['backend']} --ann-param KEY=VALUE ...`"
        )
    return manifest


def set_backend(folder: str, backend: str, params: Dict = None) -> Dict:
    """(Re)build the search back end of the index in ``folder`` on its shards, without
    extracting anything: train ``backend`` with ``params`` (``exact``: drop the approximate
    index), then commit the manifest. The previous back end stays in place on any error."""
    if os.path.isfile(os.path.join(folder, PLAN)):
        raise FileExistsError(
            f"{folder} holds an unfinished build or add ({PLAN}): run it again to finish it first"
        )
    gallery = GalleryIndex.open(folder)
    manifest = dict(gallery.manifest)
    manifest["ann_params"] = ann_params(backend, params, dim=gallery.dim)
    manifest["backend"] = backend
    manifest["ann"] = None
    if manifest["ann_params"]:
        manifest["ann"] = build_ann(gallery, backend, manifest["ann_params"])
    _commit(folder, manifest)
    return manifest


def _commit(folder: str, manifest: Dict) -> None:
    """Write the manifest (the commit point), then drop the plan and unreferenced ANN files."""
    write_manifest(folder, manifest)
    if os.path.isfile(os.path.join(folder, PLAN)):
        os.remove(os.path.join(folder, PLAN))
    remove_stale_ann_files(folder, manifest)
