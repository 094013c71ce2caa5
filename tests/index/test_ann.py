"""Approximate back ends: trained at build, extended by ``add``, reporting recall and size."""

from __future__ import annotations

import os

import faiss
import numpy as np

from stl_search.index.backends import ExactSearcher, load_searcher, measure_recall
from stl_search.index.cli import main
from stl_search.index.shards import GalleryIndex

from .helpers import build_index


def test_ivfpq_reports_its_recall_and_size(tiny_model, synthetic, tmp_path):
    folder = str(tmp_path / "index")
    params = ["nlist=2", "m=8", "nbits=4", "nprobe=1", "rerank=0"]
    build_index(
        folder,
        tiny_model[0],
        synthetic[0],
        "--backend",
        "ivfpq",
        *[a for p in params for a in ("--ann-param", p)],
    )
    index = GalleryIndex.open(folder)
    ann = index.manifest["ann"]
    assert (ann["backend"], ann["nlist"], ann["m"], ann["nbits"]) == ("ivfpq", 2, 8, 4)
    searcher, exact = load_searcher(index), ExactSearcher(index)
    queries = index.embeddings_float32()[::5]
    recall = measure_recall(searcher, exact, queries, 10)
    assert 0.0 < recall < 1.0  # 4-bit codes of 8 sub-vectors lose neighbours, measurably
    assert 0.0 < ann["recall@10"] < 1.0
    serialized = faiss.serialize_index(faiss.read_index(os.path.join(folder, ann["file"])))
    assert ann["bytes_per_box"] == serialized.size / len(index)
    reranked = load_searcher(index)
    reranked.rerank = len(index)  # re-ranking every candidate with the stored vectors is exact
    reranked.index.nprobe = 2
    assert measure_recall(reranked, exact, queries, 10) == 1.0
    out = str(tmp_path / "hits")
    hits = main(
        [
            "query",
            "--index",
            folder,
            "--query-embedding",
            _save(queries[0], tmp_path),
            "--backend",
            "exact",
            "--out",
            out,
            "--topk",
            "5",
        ]
    )
    assert hits[0].similarity > 0.999 and os.path.isfile(out + ".csv")


def test_hnsw_is_extended_by_add(tiny_model, synthetic, tmp_path):
    files = sorted(os.listdir(synthetic[0]))
    for part, names in (("a", files[:4]), ("b", files[4:])):
        (tmp_path / part).mkdir()
        for name in names:
            os.symlink(os.path.join(synthetic[0], name), tmp_path / part / name)
    folder = str(tmp_path / "index")
    build_index(folder, tiny_model[0], str(tmp_path / "a"), "--backend", "hnsw")
    main(["add", "--index", folder, "--input", str(tmp_path / "b"), "--threads", "1"])
    index = GalleryIndex.open(folder)
    searcher = load_searcher(index)
    assert searcher.name == "hnsw" and searcher.index.ntotal == len(index)
    ann = index.manifest["ann"]
    assert 0.9 <= ann["recall@10"] <= 1.0 and ann["bytes_per_box"] > 4 * index.dim
    last = index.embeddings_float32()[-1]
    _, ids = searcher.search(last[None], 1)
    assert ids[0, 0] == len(index) - 1


def _save(vector: np.ndarray, folder) -> str:
    path = str(folder / "query.npy")
    np.save(path, vector)
    return path
