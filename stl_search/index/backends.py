"""Search back ends over a :class:`~stl_search.index.shards.GalleryIndex`, all FAISS.

- ``exact`` (default): ``IndexFlatIP`` over the float32 embeddings, i.e. the dot product of
  L2-normalised embeddings, the similarity the evaluator ranks by;
- ``ivfpq``: ``IVF{nlist},PQ{m}`` (inner product) in memory, ``m + 8`` bytes per box (code + id),
  whose top ``rerank`` candidates are re-ranked exactly with the full float16 vectors read from
  the shards' memory maps (on disk, not in memory);
- ``hnsw``: ``IndexHNSWFlat`` (inner product), full vectors + graph links in memory.

The approximate ones are saved beside the shards (``ann.faiss``, FAISS's own format) and report
their measured recall@k against ``exact`` and their bytes per box. ``faiss-gpu`` is used for the
exact search when it is importable and sees a GPU.
"""

from __future__ import annotations

import os
from typing import Dict, Tuple

import faiss
import numpy as np

from ..utils.io import atomic_open
from .shards import GalleryIndex, sha256_of

__all__ = ["BACKENDS", "build_ann", "load_searcher", "measure_recall", "bytes_per_box"]

BACKENDS = ("exact", "ivfpq", "hnsw")
ANN_FILE = "ann.faiss"


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
        self.name = params["backend"]
        self.rerank = int(params.get("rerank", 0))
        if self.name == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
        elif self.name == "hnsw":
            index.hnsw.efSearch = int(params["ef_search"])

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


def _train_ann(vectors: np.ndarray, params: Dict) -> "faiss.Index":
    dim = vectors.shape[1]
    if params["backend"] == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(params["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params["ef_construction"])
        return index
    nlist = int(params["nlist"])
    index = faiss.index_factory(
        dim, f"IVF{nlist},PQ{int(params['m'])}x{int(params['nbits'])}", faiss.METRIC_INNER_PRODUCT
    )
    if len(vectors) < 39 * nlist:
        raise ValueError(
            f"IVF-PQ with nlist={nlist} needs at least {39 * nlist} boxes to train, the index has "
            f"{len(vectors)}: use a smaller nlist or the exact back end"
        )
    rng = np.random.default_rng(0)
    sample = rng.choice(len(vectors), min(len(vectors), int(params["train_size"])), replace=False)
    index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
    return index


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


def build_ann(gallery: GalleryIndex, backend: str, params: Dict = None, start: int = 0) -> Dict:
    """Train (when ``start == 0``) or extend the approximate index of ``gallery`` with its boxes
    from ``start`` on, save it as ``ann.faiss`` and return its manifest entry (parameters, file
    hash, bytes per box, recall@10 and @100 against exact on 200 of its own boxes as queries)."""
    if backend not in DEFAULT_PARAMS:
        raise ValueError(
            f"approximate back end must be one of {tuple(DEFAULT_PARAMS)}, got {backend!r}"
        )
    defaults = DEFAULT_PARAMS[backend]
    unknown = set(params or {}) - set(defaults) - {"backend", "file", "sha256", "bytes_per_box"}
    unknown -= {k for k in (params or {}) if k.startswith("recall@")}
    if unknown:
        raise ValueError(
            f"unknown {backend} parameters {sorted(unknown)}; known: {sorted(defaults)}"
        )
    params = {k: type(v)((params or {}).get(k, v)) for k, v in defaults.items()}
    params["backend"] = backend
    path = os.path.join(gallery.folder, ANN_FILE)
    vectors = gallery.embeddings_float32()
    index = _train_ann(vectors, params) if start == 0 else faiss.read_index(path)
    index.add(np.ascontiguousarray(vectors[start:]))
    with atomic_open(path, "wb") as f:
        f.write(faiss.serialize_index(index).tobytes())
    searcher = ANNSearcher(gallery, index, params)
    queries = vectors[
        np.random.default_rng(1).choice(len(vectors), min(200, len(vectors)), replace=False)
    ]
    exact = ExactSearcher(gallery)
    entry = dict(params, file=ANN_FILE, sha256=sha256_of(path), bytes_per_box=bytes_per_box(index))
    for k in (10, 100):
        entry[f"recall@{k}"] = measure_recall(searcher, exact, queries, k)
    return entry


def measure_recall(searcher, exact, queries: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k ids that ``searcher`` also returns in its top-k."""
    _, truth = exact.search(queries, k)
    _, found = searcher.search(queries, k)
    hits = [
        len(set(t[t >= 0]) & set(f[f >= 0])) / max((t >= 0).sum(), 1) for t, f in zip(truth, found)
    ]
    return float(np.mean(hits))


def load_searcher(gallery: GalleryIndex, backend: str = None):
    """The searcher of ``backend`` (default: the one the index was built with)."""
    ann = gallery.manifest.get("ann")
    backend = backend or (ann["backend"] if ann else "exact")
    if backend not in BACKENDS:
        raise ValueError(f"back end must be one of {BACKENDS}, got {backend!r}")
    if backend == "exact":
        return ExactSearcher(gallery)
    if not ann or ann["backend"] != backend:
        raise ValueError(
            f"{gallery.folder} has no {backend} index "
            f"(built with {ann['backend'] if ann else 'exact'})"
        )
    path = os.path.join(gallery.folder, ann["file"])
    if not os.path.isfile(path) or sha256_of(path) != ann["sha256"]:
        raise ValueError(f"{path} is missing or does not match the manifest")
    return ANNSearcher(gallery, faiss.read_index(path), ann)
