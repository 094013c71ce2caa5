"""An index's weights are identified by their sha256: replaced weights are refused at query time,
moved weights are accepted through ``MODEL.WEIGHTS``, and a relative path means the file the
build saw, whatever the working directory of later commands."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from stl_search.index.cli import main
from stl_search.utils.io import sha256_of

from .helpers import add_images, build_index, gallery_of, save_model


def _query(folder: str, synthetic, out, *opts: str):
    q = synthetic[1][0]
    box = [str(v) for v in q["query_box"]]
    args = ["query", "--index", folder, "--query", q["file_name"], "--box", *box, "--topk", "5"]
    return main([*args, "--out", str(out), *opts])


def test_query_refuses_weights_replaced_after_the_build(
    tiny_model, synthetic, two_images, tmp_path
):
    weights = str(tmp_path / "model.pth")
    shutil.copy(tiny_model[1].MODEL.WEIGHTS, weights)
    folder = str(tmp_path / "index")
    build_index(folder, tiny_model[0], two_images, "MODEL.WEIGHTS", weights)
    _query(folder, synthetic, tmp_path / "before")
    built_with = sha256_of(weights)
    other = save_model(tiny_model[1], tmp_path / "other", seed=1)
    shutil.copy(other, weights)  # same path, other weights
    with pytest.raises(ValueError, match="not the weights the index was built with") as error:
        _query(folder, synthetic, tmp_path / "after")
    assert built_with in str(error.value) and sha256_of(other) in str(error.value)
    assert not os.path.exists(tmp_path / "after.json")


def test_relative_weights_mean_the_file_the_build_saw(
    tiny_model, synthetic, two_images, tmp_path, monkeypatch
):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    shutil.copy(tiny_model[1].MODEL.WEIGHTS, here / "model.pth")
    save_model(tiny_model[1], elsewhere, seed=1)  # elsewhere/model.pth: other weights
    folder = str(tmp_path / "index")
    monkeypatch.chdir(here)
    build_index(folder, tiny_model[0], two_images, "MODEL.WEIGHTS", "model.pth")
    built = _query(folder, synthetic, tmp_path / "here_hits")
    monkeypatch.chdir(elsewhere)
    again = _query(folder, synthetic, tmp_path / "elsewhere_hits")
    assert [h.box_id for h in again] == [h.box_id for h in built]
    np.testing.assert_array_equal([h.similarity for h in again], [h.similarity for h in built])
    with open(os.path.join(folder, "manifest.json")) as f:
        assert json.load(f)["weights"] == str(here / "model.pth")


def test_moved_weights_are_taken_by_hash_on_query_and_add(tiny_model, synthetic, tmp_path):
    names = sorted(os.listdir(synthetic[0]))
    first = gallery_of(tmp_path / "first", synthetic[0], names[:2])
    second = gallery_of(tmp_path / "second", synthetic[0], names[2:4])
    weights = str(tmp_path / "model.pth")
    shutil.copy(tiny_model[1].MODEL.WEIGHTS, weights)
    folder = str(tmp_path / "index")
    build_index(folder, tiny_model[0], first, "MODEL.WEIGHTS", weights)
    before = _query(folder, synthetic, tmp_path / "before")

    moved = str(tmp_path / "moved" / "model_final.pth")
    os.makedirs(os.path.dirname(moved))
    shutil.move(weights, moved)
    with pytest.raises(FileNotFoundError, match=r"model.pth do not exist \(moved\?\): pass MODEL"):
        _query(folder, synthetic, tmp_path / "lost")
    after = _query(folder, synthetic, tmp_path / "after", "MODEL.WEIGHTS", moved)
    assert [h.similarity for h in after] == [h.similarity for h in before]

    add_images(folder, second, "MODEL.WEIGHTS", moved)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["weights"] == moved and len(manifest["sources"]) == 2
    _query(folder, synthetic, tmp_path / "added")  # the manifest now points at the new place

    other = save_model(tiny_model[1], tmp_path / "other", seed=1)
    for command in (
        lambda: _query(folder, synthetic, tmp_path / "o", "MODEL.WEIGHTS", other),
        lambda: add_images(folder, first, "MODEL.WEIGHTS", other),
    ):
        with pytest.raises(ValueError, match=f"MODEL.WEIGHTS {other} .* not the weights"):
            command()
    with pytest.raises(ValueError, match="take no config overrides but MODEL.WEIGHTS"):
        _query(folder, synthetic, tmp_path / "o", "MODEL.DEVICE", "cpu")
