"""Reduced stores (``--reduce pcaN|opqN``, ``--drop-full``): recall against exact search on a
clustered gallery, the manifest's record of the store, and the full vectors' removal."""

from __future__ import annotations

import json
import os
import shutil

import faiss
import numpy as np
import pytest

from stl_search.index.backends import ExactSearcher, GalleryTooSmall, load_searcher, measure_recall
from stl_search.index.builder import set_backend
from stl_search.index.cli import main
from stl_search.index.manifest import ManifestError, read_manifest
from stl_search.index.shards import GalleryIndex, sha256_of

from .helpers import build_index


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around 24 centres whose spread decays over the dimensions (as a
    trained embedding's does): most of the variance in a few directions."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / (1.0 + np.arange(dim) / 4.0)
    centres = rng.standard_normal((24, dim)) * scale
    x = centres[rng.integers(0, 24, n)] + 0.3 * rng.standard_normal((n, dim)) * scale
    x = x @ np.linalg.qr(rng.standard_normal((dim, dim)))[0]  # not axis-aligned
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def clustered_index(gallery_index, tmp_path):
    """A copy of the test index whose embeddings are replaced by :func:`clustered` vectors."""
    folder = str(tmp_path / "index")
    shutil.copytree(gallery_index, folder)
    manifest = read_manifest(folder)
    vectors = clustered(sum(s["num_boxes"] for s in manifest["shards"]), manifest["embedding_dim"])
    start = 0
    for shard in manifest["shards"]:
        path = os.path.join(folder, shard["name"] + ".emb.npy")
        np.save(path, vectors[start : start + shard["num_boxes"]].astype(np.float16))
        shard["embeddings_sha256"] = sha256_of(path)
        start += shard["num_boxes"]
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return folder


def test_reduced_exact_search_keeps_most_neighbours(clustered_index):
    reduce = "pca32"
    manifest = set_backend(clustered_index, "exact", {"reduce": reduce, "rerank": "0"})
    index = GalleryIndex.open(clustered_index)
    searcher, exact = load_searcher(index), ExactSearcher(index)
    assert searcher.name == f"exact+{reduce}" and searcher.index.d == index.dim
    queries = index.embeddings_float32()[::7]
    recall = measure_recall(searcher, exact, queries, 10)
    assert 0.85 <= recall < 1.0  # 32 of 256 dimensions: close, measurably not exact
    assert manifest["ann"]["recall@10"] >= 0.85
    assert faiss.downcast_index(searcher.index.index).code_size == 2 * 32  # float16, 32-d
    reranked = load_searcher(index)
    reranked.rerank = 100  # the full vectors re-rank the store's candidates exactly
    assert measure_recall(reranked, exact, queries, 10) >= recall
    with pytest.raises(GalleryTooSmall, match="opq32 needs a gallery of at least 256 boxes"):
        set_backend(clustered_index, "exact", {"reduce": "opq32"})  # OPQ's 8-bit codebooks
    assert read_manifest(clustered_index) == manifest  # the store in place is kept


def test_the_manifest_records_and_verifies_the_store(clustered_index, tmp_path):
    main(["train", "--index", clustered_index, "--backend", "hnsw", "--reduce", "pca64"])
    ann = read_manifest(clustered_index)["ann"]
    assert (ann["backend"], ann["reduce"], ann["full_vectors"]) == ("hnsw", "pca64", True)
    assert load_searcher(GalleryIndex.open(clustered_index)).index.d == 256
    with open(os.path.join(clustered_index, ann["file"]), "ab") as f:
        f.write(b"x")  # a store that is not the one committed is refused
    with pytest.raises(ValueError, match="does not match the manifest"):
        load_searcher(GalleryIndex.open(clustered_index))
    path = os.path.join(clustered_index, "manifest.json")
    manifest = read_manifest(clustered_index)
    manifest["ann"]["full_vectors"] = "yes"
    with open(path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ManifestError, match="ann.full_vectors must be true or false"):
        read_manifest(clustered_index)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--reduce", "pca999"], "--reduce pca999: 999 exceeds the embedding dimension 256"),
        (["--reduce", "svd32"], "--reduce svd32: expected pcaN or opqN"),
        (["--drop-full"], "--drop-full needs --reduce"),
        (["--reduce", "opq48"], "--reduce opq48: OPQ's 32 sub-spaces must divide 48"),
    ],
)
def test_bad_reductions_are_refused_before_extraction(
    tiny_model, two_images, tmp_path, argv, match
):
    folder = tmp_path / "index"
    with pytest.raises(ValueError, match=match):
        build_index(str(folder), tiny_model[0], two_images, *argv)
    assert not folder.exists() or not [f for f in os.listdir(folder) if f.startswith("shard")]


def test_dropping_the_full_vectors_keeps_build_add_and_query_working(
    tiny_model, synthetic, tmp_path, capsys
):
    files = sorted(os.listdir(synthetic[0]))
    for part, names in (("a", files[:4]), ("b", files[4:])):
        (tmp_path / part).mkdir()
        for name in names:
            os.symlink(os.path.join(synthetic[0], name), tmp_path / part / name)
    folder = str(tmp_path / "index")
    kept = str(tmp_path / "kept")
    for target, extra in ((folder, ["--drop-full"]), (kept, [])):
        build_index(target, tiny_model[0], str(tmp_path / "a"), "--reduce", "pca16", *extra)
        main(["add", "--index", target, "--input", str(tmp_path / "b"), "--threads", "1"])
    assert not [f for f in os.listdir(folder) if f.endswith(".emb.npy")]
    assert len([f for f in os.listdir(kept) if f.endswith(".emb.npy")]) == 3
    full = GalleryIndex.open(kept)
    index = GalleryIndex.open(folder)
    assert index.manifest["ann"]["full_vectors"] is False and len(index) == len(full)
    searcher = load_searcher(index)
    assert searcher.rerank == 0 and searcher.index.ntotal == len(index)
    vectors = full.embeddings_float32()  # the same model and images: the same embeddings
    _, ids = searcher.search(vectors[-3:], 1)
    assert ids[:, 0].tolist() == [len(index) - 3, len(index) - 2, len(index) - 1]
    np.save(tmp_path / "q.npy", vectors[-1])
    argv = ["query", "--index", folder, "--query-embedding", str(tmp_path / "q.npy")]
    hits = main(argv + ["--out", str(tmp_path / "hits")])
    assert "exact+pca16" in capsys.readouterr().out and hits[0].similarity > 0.99
    with pytest.raises(ValueError, match="holds no full vectors .* pca16"):
        main(argv + ["--backend", "exact"])
    with pytest.raises(ValueError, match="full vectors were dropped .* rebuild"):
        main(["train", "--index", folder, "--backend", "hnsw"])
    with pytest.raises(ValueError, match="full embeddings were dropped"):
        index.embeddings_float32()
    assert GalleryIndex.open(folder).manifest == index.manifest  # the refused train changed nothing
