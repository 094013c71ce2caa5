"""An index folder's two JSON documents, read as untrusted input and checked before use.

- ``manifest.json``: the committed index (config, weights sha256, sources, shard list with
  hashes and box counts, the approximate index's entry);
- ``build_plan.json``: an unfinished ``build`` or ``add`` (the manifest's keys, plus each planned
  shard's records), removed when it is committed.

Both come from disk and may be truncated, hand-edited or copied: every field the index uses is
checked here (shard and ANN file names must be plain names inside the folder, never ``../`` or
absolute paths), and an error names the file and the field.
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict

from ..utils.io import atomic_write_json

__all__ = [
    "FORMAT",
    "MANIFEST",
    "PLAN",
    "ManifestError",
    "shard_name",
    "read_manifest",
    "read_plan",
    "write_manifest",
    "write_plan",
]

FORMAT = "stl-search-index/1"
MANIFEST = "manifest.json"
PLAN = "build_plan.json"

_ANN_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.faiss$")


class ManifestError(ValueError):
    """A manifest or build plan that cannot be read or is inconsistent (the message names the
    file and the field)."""


def shard_name(number: int) -> str:
    return f"shard_{number:05d}"


def _load(path: str) -> Dict:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: not a readable index file ({e})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise ManifestError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


def _need(doc: Dict, path: str, key: str, types, where: str = ""):
    value = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, types):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ManifestError(f"{path}: {where}{key} must be {names}, got {value!r}")
    return value


def _check(doc: Dict, path: str, committed: bool) -> Dict:
    """Check the fields the index reads; ``committed``: a manifest (shards hashed, dimension
    known), else a plan (shards hold their records)."""
    for key, types in (
        ("index_id", str),
        ("config", str),
        ("score_thresh", (int, float)),
        ("images_per_shard", int),
        ("embedding_dtype", str),
        ("backend", str),
        ("sources", list),
        ("shards", list),
    ):
        _need(doc, path, key, types)
    if doc["embedding_dtype"] not in ("float16", "float32"):
        raise ManifestError(f"{path}: embedding_dtype {doc['embedding_dtype']!r} is not float16/32")
    if committed:
        _need(doc, path, "embedding_dim", int)
    for i, shard in enumerate(doc["shards"]):
        where = f"shards[{i}]."
        number = _need(shard, path, "number", int, where)
        name = _need(shard, path, "name", str, where)
        if number != i or name != shard_name(number):
            raise ManifestError(
                f"{path}: {where}name {name!r} / number {number!r}: expected "
                f"{shard_name(i)!r} / {i} (shards are plain names in index order)"
            )
        if committed or "sha256" in shard:
            for key in ("num_boxes", "num_records"):
                if _need(shard, path, key, int, where) < 0:
                    raise ManifestError(f"{path}: {where}{key} is negative")
            for key in ("sha256", "embeddings_sha256"):
                _need(shard, path, key, str, where)
        else:
            for j, record in enumerate(_need(shard, path, "records", list, where)):
                _need(record, path, "file_name", str, f"{where}records[{j}].")
                _need(record, path, "frame_index", int, f"{where}records[{j}].")
    ann = doc.get("ann")
    if ann is not None:
        _need(doc, path, "ann", dict)
        _need(ann, path, "backend", str, "ann.")
        if not _ANN_FILE.match(_need(ann, path, "file", str, "ann.")):
            raise ManifestError(f"{path}: ann.file {ann['file']!r} is not a plain .faiss name")
        _need(ann, path, "sha256", str, "ann.")
        if "reduce" in ann:
            _need(ann, path, "reduce", str, "ann.")
            if not isinstance(ann.get("full_vectors"), bool):
                raise ManifestError(
                    f"{path}: ann.full_vectors must be true or false, got {ann['full_vectors']!r}"
                )
    return doc


def read_manifest(folder: str) -> Dict:
    """The checked ``manifest.json`` of the built index in ``folder``."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not a built index (no {MANIFEST})")
    return _check(_load(path), path, committed=True)


def read_plan(folder: str) -> Dict:
    """The checked ``build_plan.json`` of an unfinished build or add in ``folder``."""
    path = os.path.join(folder, PLAN)
    return _check(_load(path), path, committed=False)


def write_manifest(folder: str, manifest: Dict) -> None:
    atomic_write_json(manifest, os.path.join(folder, MANIFEST))


def write_plan(folder: str, plan: Dict) -> None:
    atomic_write_json(plan, os.path.join(folder, PLAN))
