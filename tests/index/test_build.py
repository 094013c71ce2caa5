"""Building an index: same answers as brute force and as the predictor, independent of the number
of processes, resumable after a crash, extendable with ``add``."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.index import builder
from stl_search.index.backends import ExactSearcher
from stl_search.index.cli import main
from stl_search.index.query import search_index
from stl_search.index.shards import GalleryIndex
from stl_search.utils.io import sha256_of

from .helpers import assert_same_index, build_index, contents


def test_index_holds_the_predictors_detections(gallery_index, tiny_model, synthetic):
    index = GalleryIndex.open(gallery_index)
    predictor = PersonSearchPredictor(tiny_model[1])
    files = sorted(set(index.file_name.tolist()))
    assert len(files) == 6 and len(index.embeddings) == 3  # 2 images per shard
    detections = predictor.detect(files[:2])  # one forward of 2 images, as a build batch
    for name, det in zip(files[:2], detections):
        rows = index.file_name == name
        np.testing.assert_array_equal(index.boxes[rows], det.boxes)
        np.testing.assert_array_equal(index.scores[rows], det.scores)
        stored = index.embeddings_float32()[rows]
        np.testing.assert_array_equal(stored, det.embeddings.astype(np.float16).astype(np.float32))


def test_exact_topk_equals_brute_force_over_the_shards(gallery_index, tiny_model, synthetic):
    index = GalleryIndex.open(gallery_index)
    everything = np.concatenate([np.asarray(e, dtype=np.float32) for e in index.embeddings])
    predictor = PersonSearchPredictor(tiny_model[1])
    queries = [predictor.embed_query(q["file_name"], q["query_box"]) for q in synthetic[1][:3]]
    queries += list(everything[[0, 7, len(everything) - 1]])
    k = 20
    for query in queries:
        hits = search_index(index, ExactSearcher(index), query, k)
        q = query / np.linalg.norm(query)
        brute = everything @ q
        order = np.argsort(-brute, kind="stable")[:k]
        ids = np.array([h.box_id for h in hits])
        sims = np.array([h.similarity for h in hits])
        np.testing.assert_allclose(sims, brute[order], atol=1e-6)
        gaps = np.diff(brute[order])
        distinct = np.r_[gaps < -1e-6, True] & np.r_[True, gaps < -1e-6]  # no near-tie around
        np.testing.assert_array_equal(ids[distinct], order[distinct])
        assert [h.file_name for h in hits] == index.file_name[ids].tolist()


def test_two_processes_build_the_one_process_index(gallery_index, tiny_model, synthetic, tmp_path):
    folder = str(tmp_path / "index")
    build_index(folder, tiny_model[0], synthetic[0], "--num-gpus", "2")
    assert_same_index(gallery_index, folder)


def test_interrupted_build_resumes_to_the_same_index(
    gallery_index, tiny_model, synthetic, tmp_path, monkeypatch
):
    folder = str(tmp_path / "index")
    written = []
    real_write = builder.write_shard

    def write_then_crash(*args, **kwargs):
        if written:
            raise RuntimeError("killed")
        real_write(*args, **kwargs)
        written.append(args[1])

    monkeypatch.setattr(builder, "write_shard", write_then_crash)
    with pytest.raises(RuntimeError, match="killed"):
        build_index(folder, tiny_model[0], synthetic[0])
    assert written == [0] and not os.path.exists(os.path.join(folder, "manifest.json"))
    first = os.stat(os.path.join(folder, "shard_00000.npz")).st_mtime_ns
    monkeypatch.setattr(builder, "write_shard", real_write)
    build_index(folder, tiny_model[0], synthetic[0])
    assert os.stat(os.path.join(folder, "shard_00000.npz")).st_mtime_ns == first  # skipped
    assert_same_index(gallery_index, folder)


def test_add_appends_without_touching_the_built_shards(tiny_model, synthetic, tmp_path):
    files = sorted(os.listdir(synthetic[0]))
    parts = [tmp_path / "a", tmp_path / "b"]
    for part, names in zip(parts, (files[:4], files[4:])):
        part.mkdir()
        for name in names:
            os.symlink(os.path.join(synthetic[0], name), part / name)
    folder, only_b = str(tmp_path / "index"), str(tmp_path / "only_b")
    build_index(folder, tiny_model[0], str(parts[0]))
    before = {s["name"]: s["sha256"] for s in GalleryIndex.open(folder).manifest["shards"]}
    main(
        ["add", "--index", folder, "--input", str(parts[1]), "--batch-size", "2", "--threads", "1"]
    )
    build_index(only_b, tiny_model[0], str(parts[1]))

    index = GalleryIndex.open(folder)
    assert [s["name"] for s in index.manifest["shards"]] == [f"shard_0000{i}" for i in range(3)]
    for name, sha in before.items():
        assert sha256_of(os.path.join(folder, name + ".npz")) == sha
    added, alone = contents(folder), contents(only_b)
    n = len(alone["scores"])
    for key in alone:
        np.testing.assert_array_equal(added[key][-n:], alone[key], err_msg=key)
    assert len(index.manifest["sources"]) == 2


def test_an_index_folder_is_not_overwritten(gallery_index, tiny_model, synthetic, tmp_path):
    folder = str(tmp_path / "copy")
    shutil.copytree(gallery_index, folder)
    with pytest.raises(FileExistsError, match="already holds an index"):
        build_index(folder, tiny_model[0], synthetic[0])


def test_embed_query_takes_many_boxes_at_once(tiny_model, synthetic):
    predictor = PersonSearchPredictor(tiny_model[1])
    query = synthetic[1][0]
    boxes = np.array([query["query_box"], [10, 5, 40, 70], [100, 20, 150, 90]])
    together = predictor.embed_query(query["file_name"], boxes)
    assert together.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1, rtol=1e-5)
    for box, embedding in zip(boxes, together):
        alone = predictor.embed_query(query["file_name"], box)
        assert alone.shape == (256,)
        np.testing.assert_allclose(alone, embedding, atol=1e-5)
    assert not np.allclose(together[0], together[1], atol=1e-3)
