"""What an index folder holds is checked, not trusted: one writer at a time (the folder's lock),
manifests and shards read as untrusted input, and no non-finite model output written."""

from __future__ import annotations

import fcntl
import json
import os
import shutil

import numpy as np
import pytest

from stl_search.index.manifest import ManifestError
from stl_search.index.shards import GalleryIndex, ShardError
from stl_search.utils.io import sha256_of
from stl_search.utils.output_dir import OutputDirInUseError

from .helpers import build_index, save_model


def test_a_second_writer_is_refused_by_the_folders_lock(tiny_model, two_images, tmp_path):
    folder = tmp_path / "index"
    folder.mkdir()
    with open(folder / ".lock", "w") as held:  # another build holds the folder
        held.write("pid 4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputDirInUseError, match=r"index folder .*index is in use.*pid 4242"):
            build_index(str(folder), tiny_model[0], two_images)
        assert sorted(os.listdir(folder)) == [".lock"]  # nothing written
    build_index(str(folder), tiny_model[0], two_images)  # once released, the build runs
    assert len(GalleryIndex.open(str(folder))) > 0


def _edit_manifest(folder: str, edit) -> None:
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)


def _edit_shard(folder: str, number: int, edit) -> None:
    """Rewrite shard ``number``'s ``.npz`` with ``edit`` applied, and its hash in the manifest
    (a consistent but wrong index: only the content checks can catch it)."""
    path = os.path.join(folder, f"shard_{number:05d}.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    _edit_manifest(folder, lambda m: m["shards"][number].update(sha256=sha256_of(path)))


@pytest.mark.parametrize(
    "name, edit, error, match",
    [
        (
            "escaping shard",
            lambda m: m["shards"][1].update(name="../shard_00001"),
            ManifestError,
            r"manifest.json: shards\[1\].name '../shard_00001'",
        ),
        (
            "absolute shard",
            lambda m: m["shards"][0].update(name="/tmp/shard_00000"),
            ManifestError,
            r"shards\[0\].name '/tmp/shard_00000'",
        ),
        (
            "escaping ANN file",
            lambda m: m.update(ann={"backend": "hnsw", "file": "../x.faiss", "sha256": "0"}),
            ManifestError,
            r"ann.file '../x.faiss' is not a plain .faiss name",
        ),
        (
            "missing key",
            lambda m: m.pop("embedding_dim"),
            ManifestError,
            "manifest.json: embedding_dim must be int, got None",
        ),
    ],
)
def test_a_bad_manifest_is_named(gallery_index, tmp_path, name, edit, error, match):
    folder = str(tmp_path / "index")
    shutil.copytree(gallery_index, folder)
    _edit_manifest(folder, edit)
    with pytest.raises(error, match=match):
        GalleryIndex.open(folder)


def test_a_truncated_manifest_is_named(gallery_index, tmp_path):
    folder = str(tmp_path / "index")
    shutil.copytree(gallery_index, folder)
    path = os.path.join(folder, "manifest.json")
    text = open(path).read()
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(ManifestError, match=f"{path}: not a readable index file"):
        GalleryIndex.open(folder)


def _rows_out_of_range(a):
    a["record"] = a["record"] + len(a["file_name"])


def _short_boxes(a):
    a["boxes"] = a["boxes"][:-1]


def _nan_score(a):
    a["scores"] = np.where(np.arange(len(a["scores"])) == 0, np.nan, a["scores"])


@pytest.mark.parametrize(
    "edit, match",
    [
        (_rows_out_of_range, r"shard_00001.npz: record rows must lie in \[0, 2\)"),
        (_short_boxes, r"shard_00001.npz: boxes has shape \(\d+, 4\), expected \(\d+, 4\)"),
        (_nan_score, "shard_00001.npz: scores holds non-finite values"),
    ],
)
def test_an_inconsistent_shard_is_named(gallery_index, tmp_path, edit, match):
    folder = str(tmp_path / "index")
    shutil.copytree(gallery_index, folder)
    _edit_shard(folder, 1, edit)
    with pytest.raises(ShardError, match=match):
        GalleryIndex.open(folder)


def test_non_finite_model_outputs_never_enter_an_index(tiny_model, two_images, tmp_path):
    weights = save_model(
        tiny_model[1], tmp_path / "nan", seed=0, nan_parameter="roi_heads.id_head.bnneck.bias"
    )
    folder = str(tmp_path / "index")
    first = sorted(os.listdir(two_images))[0]
    with pytest.raises(ValueError, match=f"{first}: the model gave non-finite embeddings"):
        build_index(folder, tiny_model[0], two_images, "MODEL.WEIGHTS", weights)
    assert not [f for f in os.listdir(folder) if f.startswith(("shard", "manifest"))]
