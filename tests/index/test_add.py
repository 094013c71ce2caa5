"""``add`` commits once: a failed add leaves the index as it was and resumes from its plan when
run again; images already in the index are refused."""

from __future__ import annotations

import json
import os

import pytest

from stl_search.index import builder
from stl_search.index.backends import load_searcher
from stl_search.index.shards import GalleryIndex

from .helpers import add_images, build_index, gallery_of


def _manifest(folder: str) -> dict:
    with open(os.path.join(folder, "manifest.json")) as f:
        return json.load(f)


def test_a_failed_add_run_again_indexes_its_images_once(
    tiny_model, synthetic, tmp_path, monkeypatch
):
    names = sorted(os.listdir(synthetic[0]))
    first = gallery_of(tmp_path / "first", synthetic[0], names[:2])
    second = gallery_of(tmp_path / "second", synthetic[0], names[2:4])
    third = gallery_of(tmp_path / "third", synthetic[0], names[4:])
    folder = str(tmp_path / "index")
    build_index(folder, tiny_model[0], first, "--backend", "hnsw")
    built = _manifest(folder)
    boxes = {"first": len(GalleryIndex.open(folder))}

    real_build_ann = builder.build_ann

    def fail(*args, **kwargs):
        raise RuntimeError("ANN update killed")

    monkeypatch.setattr(builder, "build_ann", fail)
    with pytest.raises(RuntimeError, match="ANN update killed"):
        add_images(folder, second)
    assert _manifest(folder) == built  # nothing committed
    with pytest.raises(FileExistsError, match=r"unfinished add of \[.*second'\]: run that"):
        add_images(folder, third)  # another add while this one is unfinished
    monkeypatch.setattr(builder, "build_ann", real_build_ann)
    add_images(folder, second)  # the same command again: resumes, extracts nothing new

    index = GalleryIndex.open(folder)
    boxes["both"] = len(index)
    assert [s["name"] for s in index.manifest["shards"]] == ["shard_00000", "shard_00001"]
    assert [s["input"] for s in index.manifest["sources"]] == [first, second]
    assert load_searcher(index).index.ntotal == len(index)
    assert sorted(set(index.file_name.tolist())) == [
        os.path.join(d, n) for d, n in ((first, names[0]), (first, names[1]))
    ] + [os.path.join(second, n) for n in names[2:4]]
    assert not os.path.exists(os.path.join(folder, "build_plan.json"))
    ann_files = [f for f in os.listdir(folder) if f.endswith(".faiss")]
    assert ann_files == [index.manifest["ann"]["file"]]

    with pytest.raises(ValueError, match=f"{second}: 2 of its 2 images .* already in the index"):
        add_images(folder, second)
    assert len(GalleryIndex.open(folder)) == boxes["both"] > boxes["first"]
