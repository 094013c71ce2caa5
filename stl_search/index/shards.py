"""The on-disk gallery index: shards of detections plus one manifest, never pickled.

A folder holds

- ``shard_NNNNN.emb.npy``: the shard's embeddings, ``(B, D)`` float16 (or float32, the
  manifest's ``embedding_dtype``), L2-normalised before the cast (a plain ``.npy``, memory-mapped
  when read);
- ``shard_NNNNN.npz``: everything else about its B boxes: ``boxes`` (B, 4) float32 XYXY,
  ``scores`` (B,), ``record`` (B,) the row of the box's image in the shard's records, and the
  records themselves (``file_name``, ``frame_index``, ``timestamp``), plus ``format``,
  ``index_id``, ``shard`` and ``embeddings_sha256`` that tie the pair to its index. It is written
  last: a shard whose ``.npz`` exists and names its build is finished;
- ``manifest.json``: the config, the weights and their sha256, the embedding dimension, the
  sources and the shard list (file hashes, box counts) in index order, written once all shards
  are done (atomically, as every file here); read and checked by
  :mod:`stl_search.index.manifest`.

Global box ids are positions in the concatenation of the shards in manifest order. A shard is
read as untrusted input: its arrays must agree in length with each other, with its embeddings
and with the manifest, and every box must point at one of the shard's records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from ..utils.io import atomic_open, sha256_of
from .manifest import FORMAT, read_manifest, shard_name

__all__ = [
    "ShardError",
    "GalleryIndex",
    "write_shard",
    "shard_is_done",
    "shard_records",
]

_ARRAYS = ("boxes", "scores", "record", "file_name", "frame_index", "timestamp")


class ShardError(ValueError):
    """A shard that is missing, corrupt, or belongs to another index (the message names it)."""


def write_shard(
    folder: str,
    number: int,
    index_id: str,
    records: Sequence[Dict],
    boxes: np.ndarray,
    scores: np.ndarray,
    record_rows: np.ndarray,
    embeddings: np.ndarray,
    embedding_dtype: str = "float16",
) -> None:
    """Write shard ``number`` of index ``index_id`` (embeddings first, the ``.npz`` last)."""
    base = os.path.join(folder, shard_name(number))
    with atomic_open(base + ".emb.npy", "wb") as f:
        np.save(f, np.ascontiguousarray(embeddings, dtype=embedding_dtype), allow_pickle=False)
    with atomic_open(base + ".npz", "wb") as f:
        np.savez(
            f,
            format=np.array(FORMAT),
            index_id=np.array(index_id),
            shard=np.array(number, dtype=np.int64),
            embeddings_sha256=np.array(sha256_of(base + ".emb.npy")),
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            scores=np.asarray(scores, dtype=np.float32).ravel(),
            record=np.asarray(record_rows, dtype=np.int64).ravel(),
            file_name=np.array([r["file_name"] for r in records], dtype=str),
            frame_index=np.array([r["frame_index"] for r in records], dtype=np.int64),
            timestamp=np.array([r["timestamp"] for r in records], dtype=np.float64),
        )


def _load_npz(path: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zip, header or dtype errors all mean the same to the user
        raise ShardError(f"shard {path} is not a readable index shard ({e})") from None


def shard_is_done(folder: str, number: int, index_id: str, records: Sequence[Dict]) -> bool:
    """Whether shard ``number`` of index ``index_id`` holding ``records`` was finished (by an
    interrupted run of the same build or add)."""
    path = os.path.join(folder, shard_name(number) + ".npz")
    if not os.path.isfile(path) or not os.path.isfile(path[: -len(".npz")] + ".emb.npy"):
        return False
    try:
        meta = _load_npz(path)
    except ShardError:
        return False
    if str(meta.get("index_id")) != index_id or int(meta.get("shard", -1)) != number:
        return False
    return meta["file_name"].tolist() == [r["file_name"] for r in records] and meta[
        "frame_index"
    ].tolist() == [int(r["frame_index"]) for r in records]


def shard_records(folder: str, number: int) -> Set[Tuple[str, int]]:
    """``(absolute file name, frame index)`` of every record of finished shard ``number``."""
    meta = _load_npz(os.path.join(folder, shard_name(number) + ".npz"))
    names = [os.path.abspath(str(n)) for n in meta.get("file_name", [])]
    return set(zip(names, (int(i) for i in meta.get("frame_index", []))))


def _check_shard(path: str, meta: Dict[str, np.ndarray], entry: Dict, dim: int, emb) -> None:
    """Raise :class:`ShardError` naming ``path`` and the field when the shard's arrays disagree
    with each other, with its embeddings or with its manifest entry."""
    missing = [k for k in _ARRAYS + ("shard",) if k not in meta]
    if missing:
        raise ShardError(f"shard {path} lacks the arrays {missing}")
    n, records = int(entry["num_boxes"]), len(meta["file_name"])
    expected = {
        "boxes": (n, 4),
        "scores": (n,),
        "record": (n,),
        "file_name": (int(entry["num_records"]),),
        "frame_index": (records,),
        "timestamp": (records,),
    }
    for key, shape in expected.items():
        if meta[key].shape != shape:
            raise ShardError(f"shard {path}: {key} has shape {meta[key].shape}, expected {shape}")
    if int(meta["shard"]) != entry["number"]:
        raise ShardError(
            f"shard {path} says it is shard {int(meta['shard'])}, not {entry['number']}"
        )
    if emb.shape != (n, dim):
        raise ShardError(f"shard {path}: embeddings {emb.shape}, expected {(n, dim)}")
    rows = meta["record"]
    if n and (rows.min() < 0 or rows.max() >= records):
        raise ShardError(f"shard {path}: record rows must lie in [0, {records}), got {rows.max()}")
    for key in ("boxes", "scores"):
        if not np.isfinite(meta[key]).all():
            raise ShardError(f"shard {path}: {key} holds non-finite values")


def _open_embeddings(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise ShardError(f"shard {path} is not a readable .npy ({e})") from None


@dataclass
class GalleryIndex:
    """The boxes of a built index, read and checked against its manifest.

    Attributes:
        manifest: the parsed ``manifest.json``.
        embeddings: per shard, a read-only memory map ``(B_s, D)`` (``embedding_dtype``).
        boxes, scores: ``(N, 4)``, ``(N,)`` float32 over all shards.
        file_name, frame_index, timestamp: per box, its source (``frame_index`` -1 and
            ``timestamp`` -1 for an image file).
    """

    folder: str
    manifest: Dict
    embeddings: List[np.ndarray]
    boxes: np.ndarray
    scores: np.ndarray
    file_name: np.ndarray
    frame_index: np.ndarray
    timestamp: np.ndarray

    @classmethod
    def open(cls, folder: str, verify: bool = True, manifest: Dict = None) -> "GalleryIndex":
        """Read ``folder``; with ``verify`` every shard file's sha256 is checked against the
        manifest (``manifest``: the one about to be committed instead of ``manifest.json``).
        Raises :class:`ShardError` naming the first bad shard."""
        manifest = manifest or read_manifest(folder)
        dim = int(manifest["embedding_dim"])
        dtype = np.dtype(manifest.get("embedding_dtype", "float16"))
        parts = {k: [] for k in ("boxes", "scores", "file_name", "frame_index", "timestamp")}
        embeddings = []
        dropped = (manifest.get("ann") or {}).get("full_vectors", True) is False
        for entry in manifest["shards"]:
            base = os.path.join(folder, entry["name"])
            for suffix, key in ((".npz", "sha256"), (".emb.npy", "embeddings_sha256")):
                if dropped and suffix == ".emb.npy" and not os.path.isfile(base + suffix):
                    continue  # deleted for the reduced store (``--drop-full``)
                if not os.path.isfile(base + suffix):
                    raise ShardError(f"shard {base + suffix} listed in the manifest is missing")
                if verify and sha256_of(base + suffix) != entry[key]:
                    raise ShardError(
                        f"shard {base + suffix} does not match the manifest (sha256 differs): "
                        "corrupt, or copied from another index"
                    )
            meta = _load_npz(base + ".npz")
            if (
                str(meta.get("format")) != FORMAT
                or str(meta.get("index_id")) != manifest["index_id"]
            ):
                raise ShardError(f"shard {base}.npz belongs to another index")
            width = dim
            if dropped and not os.path.isfile(base + ".emb.npy"):
                width = 0  # an empty stand-in, which rows() refuses
                emb = np.zeros((int(entry["num_boxes"]), 0), dtype=dtype)
            else:
                emb = _open_embeddings(base + ".emb.npy")
            if emb.dtype != dtype or emb.ndim != 2:
                raise ShardError(
                    f"shard {base}.emb.npy holds {emb.dtype} {emb.shape}, "
                    f"expected {dtype} (B, {dim})"
                )
            _check_shard(base + ".npz", meta, entry, width, emb)
            embeddings.append(emb)
            rows = meta["record"]
            parts["boxes"].append(meta["boxes"])
            parts["scores"].append(meta["scores"])
            for key in ("file_name", "frame_index", "timestamp"):
                parts[key].append(meta[key][rows])
        if not embeddings:
            raise ValueError(f"{folder}: the index has no shards")
        return cls(
            folder=folder,
            manifest=manifest,
            embeddings=embeddings,
            **{k: np.concatenate(v) for k, v in parts.items()},
        )

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    def embeddings_float32(self) -> np.ndarray:
        """All embeddings ``(N, D)`` float32 (the exact index's copy)."""
        self._need_full_vectors()
        out = np.empty((len(self), self.dim), dtype=np.float32)
        start = 0
        for emb in self.embeddings:
            out[start : start + len(emb)] = emb
            start += len(emb)
        return out

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Embeddings ``(len(ids), D)`` float32 of global box ``ids``, read from the memory maps."""
        ids = np.asarray(ids, dtype=np.int64)
        offsets = np.cumsum([0] + [len(e) for e in self.embeddings])
        shard = np.searchsorted(offsets, ids, side="right") - 1
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for s in np.unique(shard):
            if self.embeddings[s].shape[1] != self.dim:
                self._need_full_vectors()
            sel = shard == s
            out[sel] = self.embeddings[s][ids[sel] - offsets[s]]
        return out

    def _need_full_vectors(self) -> None:
        if any(e.shape[1] != self.dim for e in self.embeddings):
            raise ValueError(
                f"{self.folder}: the full embeddings were dropped for the reduced store "
                "(--drop-full); only its own back end can search it"
            )
