"""Approximate back ends: trained at build, extended by ``add``, reporting recall and size."""

from __future__ import annotations

import os
import shutil

import faiss
import numpy as np
import pytest

from stl_search.index.backends import (
    ExactSearcher,
    GalleryTooSmall,
    load_searcher,
    measure_recall,
)
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


def _ann_args(*pairs: str) -> list:
    return [a for p in pairs for a in ("--ann-param", p)]


@pytest.mark.parametrize(
    "backend, pairs, match",
    [
        ("ivfpq", ["nlist=abc"], "--ann-param nlist=abc: nlist takes an integer"),
        ("ivfpq", ["nlist=16"], "needs a gallery of at least 624 boxes, .* give at most 200"),
        ("ivfpq", ["nlist=1", "m=7"], "--ann-param m=7: m must divide the embedding dimension 256"),
        ("ivfpq", ["nlist=1", "train_size=100"], "train_size=100: .* at least 256 boxes"),
        ("ivfpq", ["nprobe=0"], r"--ann-param nprobe=0: nprobe must be >= 1"),
        ("hnsw", ["nlist=4"], "--ann-param nlist: not a hnsw parameter"),
        ("exact", ["nlist=4"], "the exact back end takes none"),
    ],
)
def test_ann_parameters_are_checked_before_extraction(
    tiny_model, two_images, tmp_path, backend, pairs, match
):
    folder = tmp_path / "index"
    with pytest.raises(ValueError, match=match):
        build_index(
            str(folder), tiny_model[0], two_images, "--backend", backend, *_ann_args(*pairs)
        )
    assert not folder.exists() or not [f for f in os.listdir(folder) if f.startswith("shard")]


def test_a_gallery_too_small_for_ivfpq_is_indexed_exact_and_trained_later(
    tiny_model, synthetic, tmp_path, capsys
):
    folder = str(tmp_path / "index")
    # 6 images may give up to 600 boxes; these give fewer than the 256 of 8-bit codebooks
    with pytest.raises(GalleryTooSmall, match="at least 256 boxes, the index has .* train --index"):
        build_index(
            folder, tiny_model[0], synthetic[0], "--backend", "ivfpq", *_ann_args("nlist=1")
        )
    index = GalleryIndex.open(folder)
    assert (index.manifest["backend"], index.manifest["ann"]) == ("exact", None)
    query = _save(index.embeddings_float32()[3], tmp_path)
    out = str(tmp_path / "hits")
    main(["query", "--index", folder, "--query-embedding", query, "--out", out])
    assert "exact search" in capsys.readouterr().out
    with pytest.raises(ValueError, match="has no trained ivfpq index .* serves exact.* train"):
        main(["query", "--index", folder, "--query-embedding", query, "--backend", "ivfpq"])

    with pytest.raises(GalleryTooSmall, match="at least 256 boxes"):  # still too few: unchanged
        main(["train", "--index", folder, "--backend", "ivfpq", *_ann_args("nlist=1")])
    assert GalleryIndex.open(folder).manifest == index.manifest
    pairs = ("nlist=2", "m=8", "nbits=4", "rerank=0")
    main(["train", "--index", folder, "--backend", "ivfpq", *_ann_args(*pairs)])
    trained = GalleryIndex.open(folder)
    assert trained.manifest["backend"] == trained.manifest["ann"]["backend"] == "ivfpq"
    assert trained.manifest["shards"] == index.manifest["shards"]  # nothing re-extracted
    hits = main(["query", "--index", folder, "--query-embedding", query, "--out", out])
    assert "ivfpq search" in capsys.readouterr().out and len(hits) == 10

    main(["train", "--index", folder, "--backend", "exact"])
    assert GalleryIndex.open(folder).manifest["ann"] is None
    assert not [f for f in os.listdir(folder) if f.endswith(".faiss")]


def test_train_needs_a_built_index(gallery_index, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a built index"):
        main(["train", "--index", str(tmp_path), "--backend", "hnsw"])
    folder = str(tmp_path / "copy")
    shutil.copytree(gallery_index, folder)
    main(["train", "--index", folder, "--backend", "hnsw"])
    assert load_searcher(GalleryIndex.open(folder)).name == "hnsw"


def _save(vector: np.ndarray, folder) -> str:
    path = str(folder / "query.npy")
    np.save(path, vector)
    return path
