"""Search back ends over a :class:`~stl_search.index.shards.GalleryIndex`, all FAISS.

- ``exact`` (default): ``IndexFlatIP`` over the float32 embeddings, i.e. the dot product of
  L2-normalised embeddings, the similarity the evaluator ranks by;
- ``ivfpq``: ``IVF{nlist},PQ{m}`` (inner product) in memory, ``m + 8`` bytes per box (code + id),
  whose top ``rerank`` candidates are re-ranked exactly with the full float16 vectors read from
  the shards' memory maps (on disk, not in memory);
- ``hnsw``: ``IndexHNSWFlat`` (inner product), full vectors + graph links in memory.

Any of them may search a reduced store instead (``reduce``: ``pcaN`` or ``opqN``): a FAISS
``PCAMatrix`` or ``OPQMatrix`` to N dimensions trained on the gallery, then re-normalisation (the
dot product of the projections approximates the cosine), inside the same ``ann-*.faiss`` file
(``exact`` keeps the reduced vectors as float16). With the full vectors kept, the store's top
``rerank`` candidates are re-ranked exactly; with ``drop_full`` the shards' ``.emb.npy`` files
are deleted once the manifest is committed and the reduced store is all that is searched.

The approximate ones are saved beside the shards (``ann.faiss``, FAISS's own format) and report
their measured recall@k against ``exact`` and their bytes per box. ``faiss-gpu`` is used for the
exact search when it is importable and sees a GPU.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Dict, Tuple

import faiss
import numpy as np

from ..utils.io import atomic_open, sha256_of
from .shards import GalleryIndex

__all__ = [
    "BACKENDS",
    "GalleryTooSmall",
    "ann_params",
    "min_boxes",
    "build_ann",
    "remove_stale_ann_files",
    "load_searcher",
    "measure_recall",
    "bytes_per_box",
    "full_vectors_kept",
    "fit_projection",
]

BACKENDS = ("exact", "ivfpq", "hnsw")


def _on_gpu(index: "faiss.Index") -> "faiss.Index":
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_all_gpus(index)
    return index


def bytes_per_box(index: "faiss.Index") -> float:
    """The serialized size of ``index`` over its number of vectors (what it holds in memory)."""
    return float(
        faiss.serialize_index(faiss.index_gpu_to_cpu(index) if _is_gpu(index) else index).size
    ) / max(index.ntotal, 1)


def _is_gpu(index) -> bool:
    return "Gpu" in type(index).__name__


class ExactSearcher:
    """Exact inner product over all embeddings (float32 in memory)."""

    name = "exact"

    def __init__(self, gallery: GalleryIndex):
        self.index = faiss.IndexFlatIP(gallery.dim)
        self.index.add(gallery.embeddings_float32())
        self.index = _on_gpu(self.index)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(similarities, ids)``, each ``(Q, k)``, best first; ids -1 past the index size."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


class ANNSearcher:
    """A trained approximate FAISS index; IVF-PQ candidates are re-ranked with the full vectors."""

    def __init__(self, gallery: GalleryIndex, index: "faiss.Index", params: Dict):
        self.gallery = gallery
        self.index = index
        self.name = params["backend"] + (f"+{params['reduce']}" if params.get("reduce") else "")
        self.rerank = int(params.get("rerank", 0)) if params.get("full_vectors", True) else 0
        space = faiss.ParameterSpace()
        if params["backend"] == "ivfpq":
            space.set_index_parameter(index, "nprobe", int(params["nprobe"]))
        elif params["backend"] == "hnsw":
            space.set_index_parameter(index, "efSearch", int(params["ef_search"]))

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not self.rerank:
            return self.index.search(queries, k)
        _, candidates = self.index.search(queries, max(k, self.rerank))
        sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for q, cand in enumerate(candidates):
            cand = cand[cand >= 0]
            exact = self.gallery.rows(cand) @ queries[q]
            top = np.argsort(-exact, kind="stable")[:k]
            sims[q, : len(top)], ids[q, : len(top)] = exact[top], cand[top]
        return sims, ids


DEFAULT_PARAMS = {
    "ivfpq": {
        "nlist": 1024,
        "m": 64,
        "nbits": 8,
        "nprobe": 32,
        "rerank": 1000,
        "train_size": 65536,
    },
    "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 128},
}
REDUCED_PARAMS = {"rerank": 1000, "train_size": 65536}
_REDUCE = re.compile(r"^(pca|opq)([1-9][0-9]*)$")
_LIMITS = {"rerank": (0, None), "nbits": (1, 16), ("hnsw", "m"): (2, None)}


class GalleryTooSmall(ValueError):
    """Fewer boxes than an approximate index needs to train (the message says how many)."""


def min_boxes(params: Dict) -> int:
    """The fewest boxes an approximate index of ``params`` trains on: 39 per IVF list (FAISS's
    k-means minimum) and 2^nbits per PQ codebook for IVF-PQ, the reduced dimension for a
    projection (PCA or OPQ) and 256 for OPQ (its 8-bit codebooks); one for HNSW or exact."""
    need = 1
    if params["backend"] == "ivfpq":
        need = max(39 * params["nlist"], 2 ** params["nbits"])
    if params.get("reduce"):
        need = max(need, _reduced_dim(params), 256 if params["reduce"].startswith("opq") else 1)
    return need


def _reduced_dim(params: Dict) -> int:
    return int(_REDUCE.match(params["reduce"]).group(2))


def _describe(params: Dict) -> str:
    text = params["backend"]
    if params["backend"] == "ivfpq":
        text = f"ivfpq with nlist={params['nlist']}, nbits={params['nbits']}"
    return text + (f" reduced by {params['reduce']}" if params.get("reduce") else "")


def _check_reduce(params: Dict, given: Dict, dim: int) -> None:
    """Add the checked ``reduce`` and ``full_vectors`` entries of ``given`` to ``params``."""
    reduce, drop = given.pop("reduce", None), given.pop("drop_full", False)
    if reduce is None:
        if drop:
            raise ValueError("--drop-full needs --reduce: the full vectors are all there is")
        return
    match = _REDUCE.match(str(reduce))
    if not match:
        raise ValueError(f"--reduce {reduce}: expected pcaN or opqN (e.g. pca256, opq128)")
    n = int(match.group(2))
    if dim is not None and n > dim:
        raise ValueError(f"--reduce {reduce}: {n} exceeds the embedding dimension {dim}")
    opq_m = params.get("m", 32) if params["backend"] == "ivfpq" else min(32, n)
    if match.group(1) == "opq" and n % opq_m:
        raise ValueError(f"--reduce {reduce}: OPQ's {opq_m} sub-spaces must divide {n}")
    params["reduce"], params["full_vectors"] = str(reduce), not drop


def ann_params(backend: str, given: Dict = None, dim: int = None, max_boxes: int = None) -> Dict:
    """The full, checked parameters of ``backend`` (``{}`` for ``exact`` without ``reduce``):
    ``given`` (strings from ``--ann-param KEY=VALUE`` or numbers, plus ``reduce`` and
    ``drop_full`` from ``--reduce``/``--drop-full``) over the defaults. Checked before any
    extraction: unknown keys, non-integers, values out of range, ``m`` not dividing the
    (reduced) embedding dimension ``dim``, a ``train_size`` or a largest possible gallery
    (``max_boxes``) below the minimum, a reduction that is not ``pcaN``/``opqN`` with N <= ``dim``.

    Raises:
        ValueError: naming ``--ann-param`` (or ``--backend``, ``--reduce``) and the key.
    """
    given = dict(given or {})
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    params = {"backend": backend}
    _check_reduce(params, given, dim)
    defaults = dict(DEFAULT_PARAMS.get(backend, {}))
    if params.get("reduce"):
        defaults = dict(REDUCED_PARAMS, **defaults)
    elif backend == "exact":
        if given:
            raise ValueError(f"--ann-param {sorted(given)}: the exact back end takes none")
        return {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"--ann-param {unknown[0]}: not a {backend} parameter (known: {', '.join(defaults)})"
        )
    for key, default in defaults.items():
        value = given.get(key, default)
        try:
            if isinstance(value, (bool, float)) or not str(value).strip().lstrip("-").isdigit():
                raise ValueError
            params[key] = int(value)
        except ValueError:
            raise ValueError(f"--ann-param {key}={value}: {key} takes an integer") from None
        low, high = _LIMITS.get((backend, key), _LIMITS.get(key, (1, None)))
        if params[key] < low or (high is not None and params[key] > high):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(f"--ann-param {key}={value}: {key} must be {bound}")
    if params.get("reduce") and dim is not None:
        dim = _reduced_dim(params)
    if backend == "ivfpq" and dim is not None and dim % params["m"]:
        raise ValueError(
            f"--ann-param m={params['m']}: m must divide the embedding dimension {dim}"
            + (f" ({params['reduce']})" if params.get("reduce") else "")
        )
    need = min_boxes(params)
    if "train_size" in params and params["train_size"] < need:
        raise ValueError(
            f"--ann-param train_size={params['train_size']}: {_describe(params)} trains on at "
            f"least {need} boxes"
        )
    if max_boxes is not None and max_boxes < need:
        raise ValueError(
            f"--backend {_describe(params)} needs a gallery of at least {need} boxes, and these "
            f"inputs give at most {max_boxes}: use a smaller --ann-param nlist or nbits, or "
            "--backend exact"
        )
    return params


def _factory(dim: int, params: Dict) -> str:
    """The ``faiss.index_factory`` string of ``params`` (inner product) over ``dim`` inputs."""
    backend, reduce = params["backend"], params.get("reduce")
    if backend == "hnsw":
        inner = f"HNSW{params['m']}"
    elif backend == "ivfpq":
        inner = f"IVF{params['nlist']},PQ{params['m']}x{params['nbits']}"
    else:
        inner = "SQfp16"
    if not reduce:
        return inner
    n = _reduced_dim(params)
    if reduce.startswith("pca"):
        return f"PCA{n},L2norm,{inner}"
    return f"OPQ{params['m'] if backend == 'ivfpq' else min(32, n)}_{n},L2norm,{inner}"


def _train_ann(gallery: GalleryIndex, params: Dict) -> "faiss.Index":
    """The empty index of ``params``, trained on ``train_size`` boxes drawn from ``gallery``
    (read from its memory maps: never all of it in memory)."""
    if len(gallery) < min_boxes(params):
        raise GalleryTooSmall(
            f"--backend {_describe(params)} needs a gallery of at least {min_boxes(params)} "
            f"boxes, the index has {len(gallery)}"
        )
    index = faiss.index_factory(
        gallery.dim, _factory(gallery.dim, params), faiss.METRIC_INNER_PRODUCT
    )
    if params["backend"] == "hnsw":
        faiss.downcast_index(
            faiss.downcast_index(index).index if params.get("reduce") else index
        ).hnsw.efConstruction = params["ef_construction"]
    if not index.is_trained:
        rng, n = np.random.default_rng(0), len(gallery)
        sample = rng.choice(n, min(n, params["train_size"]), replace=False)
        index.train(np.ascontiguousarray(gallery.rows(np.sort(sample))))
    return index


def _blocks(gallery: GalleryIndex, start: int, size: int = 65536):
    """``(first id, float32 rows)`` of ``gallery`` from box ``start`` on, ``size`` at a time."""
    for first in range(start, len(gallery), size):
        yield first, gallery.rows(np.arange(first, min(first + size, len(gallery))))


class _BlockExact:
    """Exact top-k over the memory-mapped embeddings, a block at a time (the recall reference
    of a gallery larger than memory)."""

    def __init__(self, gallery: GalleryIndex):
        self.gallery = gallery

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for first, rows in _blocks(self.gallery, 0):
            block = queries @ rows.T
            allsims = np.concatenate([sims, block], axis=1)
            allids = np.concatenate(
                [ids, np.broadcast_to(first + np.arange(len(rows)), block.shape)], 1
            )
            top = np.argsort(-allsims, axis=1, kind="stable")[:, :k]
            sims, ids = np.take_along_axis(allsims, top, 1), np.take_along_axis(allids, top, 1)
        return sims, ids


def fit_projection(vectors: np.ndarray, reduce: str):
    """``reduce``'s projection and re-normalisation trained on ``vectors`` ``(N, D)``, as a
    reduced store applies them (the same FAISS chain), as a function of ``(Q, D)`` arrays."""
    dim = vectors.shape[1]
    params = ann_params("exact", {"reduce": reduce}, dim)
    index = faiss.index_factory(dim, _factory(dim, params), faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def project(x: np.ndarray, index=index) -> np.ndarray:  # holds the chain's owner
        for i in range(index.chain.size()):
            x = index.chain.at(i).apply(np.ascontiguousarray(x, dtype=np.float32))
        return x

    return project


def full_vectors_kept(manifest: Dict) -> bool:
    """Whether the shards of the index of ``manifest`` still hold their full embeddings."""
    return (manifest.get("ann") or {}).get("full_vectors", True)


def build_ann(gallery: GalleryIndex, backend: str, params: Dict = None, base: Dict = None) -> Dict:
    """Train the approximate index of ``gallery`` (``base`` None), or extend the one of manifest
    entry ``base`` with the boxes it lacks; save it as ``ann-<sha256>.faiss`` (a new file: the
    manifest, written after, is what makes it current) and return its manifest entry
    (parameters, file and hash, bytes per box, recall@10 and @100 against exact on 200 of its
    own boxes as queries; an extended store whose full vectors were dropped keeps the figures
    measured when it was trained).

    Raises:
        GalleryTooSmall: fewer boxes than ``params`` train on.
        ValueError: training asked of an index whose full vectors were dropped.
    """
    keys = set(DEFAULT_PARAMS.get(backend, {})) | set(REDUCED_PARAMS)
    given = {k: v for k, v in (base or params or {}).items() if k in keys}
    source = base or params or {}
    if source.get("reduce"):
        given.update(reduce=source["reduce"], drop_full=not source.get("full_vectors", True))
    params = ann_params(backend, given, gallery.dim)
    if base is None and not full_vectors_kept(gallery.manifest):
        raise ValueError(
            f"{gallery.folder}: its full vectors were dropped (--drop-full), so no back end can "
            "be trained on it again: rebuild the index to change it"
        )
    if base is None:
        index = _train_ann(gallery, params)
    else:
        index = faiss.read_index(_checked_file(gallery.folder, base))
    for _, rows in _blocks(gallery, index.ntotal):
        index.add(np.ascontiguousarray(rows))
    data = faiss.serialize_index(index).tobytes()
    name = f"ann-{hashlib.sha256(data).hexdigest()[:16]}.faiss"
    path = os.path.join(gallery.folder, name)
    with atomic_open(path, "wb") as f:
        f.write(data)
    entry = dict(params, file=name, sha256=sha256_of(path), bytes_per_box=bytes_per_box(index))
    if base is not None and not params.get("full_vectors", True):
        entry.update({k: base[k] for k in ("recall@10", "recall@100") if k in base})
        return entry
    searcher = ANNSearcher(gallery, index, params)
    queries = gallery.rows(
        np.random.default_rng(1).choice(len(gallery), min(200, len(gallery)), replace=False)
    )
    exact = _BlockExact(gallery)
    for k in (10, 100):
        entry[f"recall@{k}"] = measure_recall(searcher, exact, queries, k)
    return entry


def remove_stale_ann_files(folder: str, manifest: Dict) -> None:
    """Delete the ``ann-*.faiss`` files of ``folder`` the manifest does not name (left by a
    replaced back end or an interrupted commit), and the shards' ``.emb.npy`` files when the
    manifest's reduced store dropped the full vectors."""
    keep = (manifest.get("ann") or {}).get("file")
    for name in os.listdir(folder):
        if name.startswith("ann") and name.endswith(".faiss") and name != keep:
            os.remove(os.path.join(folder, name))
    if not full_vectors_kept(manifest):
        for shard in manifest["shards"]:
            path = os.path.join(folder, shard["name"] + ".emb.npy")
            if os.path.isfile(path):
                os.remove(path)


def _checked_file(folder: str, ann: Dict) -> str:
    path = os.path.join(folder, ann["file"])
    if not os.path.isfile(path) or sha256_of(path) != ann["sha256"]:
        raise ValueError(f"{path} is missing or does not match the manifest")
    return path


def measure_recall(searcher, exact, queries: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k ids that ``searcher`` also returns in its top-k."""
    _, truth = exact.search(queries, k)
    _, found = searcher.search(queries, k)
    hits = [
        len(set(t[t >= 0]) & set(f[f >= 0])) / max((t >= 0).sum(), 1) for t, f in zip(truth, found)
    ]
    return float(np.mean(hits))


def load_searcher(gallery: GalleryIndex, backend: str = None):
    """The searcher of ``backend`` (default: the index's own, the manifest's ``backend`` and
    reduced store if any). ``exact`` asked for explicitly searches the full vectors.

    Raises:
        ValueError: the index has no trained index of that back end, or its full vectors were
            dropped and ``exact`` was asked for (never silently another).
    """
    own = gallery.manifest.get("backend", "exact")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    ann = gallery.manifest.get("ann")
    full = full_vectors_kept(gallery.manifest)
    if backend == "exact" and not full:
        raise ValueError(
            f"{gallery.folder} holds no full vectors (dropped for its {ann['reduce']} store): "
            "it is searched by its own back end only (leave --backend out)"
        )
    if backend == "exact" or (backend is None and not ann):
        return ExactSearcher(gallery)
    backend = backend or own
    if not ann or ann["backend"] != backend:
        raise ValueError(
            f"{gallery.folder} has no trained {backend} index (it serves "
            f"{ann['backend'] if ann else 'exact'}): build one with `python -m stl_search.index "
            f"train --index {gallery.folder} --backend {backend}`"
        )
    return ANNSearcher(gallery, faiss.read_index(_checked_file(gallery.folder, ann)), ann)
