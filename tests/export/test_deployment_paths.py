"""An export runs through the predictor, the search command and the index commands, under a
shipped config's inference fast path, and is refused when made from other weights or settings."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

from stl_search import search
from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.export import ExportedPersonSearch
from stl_search.index import cli as index_cli
from stl_search.index.shards import GalleryIndex
from stl_search.modeling import fast_path

FORMATS = ["onnx", "torchscript"]


def _close(got, ref):
    """Same detections (order, boxes within 1 px) and embeddings (cosine >= 0.999)."""
    assert len(got) == len(ref) > 0
    assert np.abs(got.boxes - ref.boxes).max() <= 1.0
    assert (got.embeddings * ref.embeddings).sum(axis=1).min() >= 0.999


@pytest.mark.parametrize("fmt", FORMATS)
def test_predictor_takes_an_export_under_the_shipped_fast_path(deployed, fmt):
    cfg = deployed.cfg
    exported = ExportedPersonSearch(deployed.exports[fmt], num_threads=1)
    predictor = PersonSearchPredictor(cfg, model=exported)
    assert predictor.model is exported  # prepared as it is: not copied, folded or converted
    reference = PersonSearchPredictor(cfg)  # PyTorch from the weights, folded + channels-last
    bgr = cv2.imread(deployed.query)
    _close(predictor.detect([bgr])[0], reference.detect([bgr])[0])
    got, ref = predictor.embed_query(bgr, deployed.box), reference.embed_query(bgr, deployed.box)
    assert float(got @ ref) >= 0.999


def _build(folder, deployed, *extra):
    return index_cli.main(
        ["build", "--index", folder, "--config-file", deployed.config, "--input"]
        + [deployed.gallery, "--images-per-shard", "2", "--threads", "1", *extra]
        + ["MODEL.WEIGHTS", deployed.weights]
    )


def _search_args(deployed, out, *extra):
    args = ["--config-file", deployed.config, "--query", deployed.query, "--box"]
    args += [str(v) for v in deployed.box] + ["--gallery", deployed.gallery, "--topk", "3"]
    return args + ["--out", str(out), *extra, "MODEL.WEIGHTS", deployed.weights]


@pytest.fixture(scope="module")
def pytorch_results(deployed, tmp_path_factory):
    """The PyTorch index of the gallery and the PyTorch search hits, for both formats."""
    folder = tmp_path_factory.mktemp("pytorch")
    _build(str(folder / "index"), deployed)
    hits = search.main(_search_args(deployed, folder / "hits.png"))
    return GalleryIndex.open(str(folder / "index")), hits


@pytest.mark.parametrize("fmt", FORMATS)
def test_search_and_index_run_on_an_export(deployed, pytorch_results, fmt, tmp_path, capsys):
    export = deployed.exports[fmt]
    ref, reference = pytorch_results
    # Index build, add and query on the export: the same boxes and embeddings as PyTorch's.
    _build(str(tmp_path / "exported"), deployed, "--export", export)
    got = GalleryIndex.open(str(tmp_path / "exported"))
    assert len(got) == len(ref) > 0
    assert np.abs(got.boxes - ref.boxes).max() <= 1.0
    cosine = (got.embeddings_float32() * ref.embeddings_float32()).sum(axis=1)
    assert cosine.min() >= 0.999
    new_image = shutil.copy(deployed.query, tmp_path / "new_scene.png")  # not yet indexed
    index_cli.main(
        ["add", "--index", str(tmp_path / "exported"), "--input", str(new_image)]
        + ["--threads", "1", "--export", export]
    )
    assert len(GalleryIndex.open(str(tmp_path / "exported"))) > len(got)
    query = ["query", "--index", str(tmp_path / "exported"), "--query", deployed.query, "--box"]
    query += [str(v) for v in deployed.box] + ["--out", str(tmp_path / "q"), "--export", export]
    assert index_cli.main(query)
    # The search command on the export: the same ranking as on PyTorch.
    hits = search.main(_search_args(deployed, tmp_path / "x.png", "--export", export))
    assert len(hits) == len(reference) > 0
    for hit, ref_hit in zip(hits[:10], reference[:10]):
        assert hit.file_name == ref_hit.file_name
        assert np.abs(hit.box - ref_hit.box).max() <= 1.0
        assert abs(hit.similarity - ref_hit.similarity) <= 2e-3
    assert f"saved {tmp_path / 'x.png'}" in capsys.readouterr().out


def test_an_export_of_other_weights_or_settings_is_refused(deployed, tmp_path):
    export = deployed.exports["onnx"]
    other = tmp_path / "other.pth"
    with open(deployed.weights, "rb") as f:
        other.write_bytes(f.read() + b"\0")  # other bytes, other sha256
    args = ["--config-file", deployed.config, "--query", deployed.query, "--box"]
    args += [str(v) for v in deployed.box] + ["--gallery", deployed.gallery]
    args += ["--out", str(tmp_path / "x.png"), "--export", export]
    with pytest.raises(ValueError, match="made from other weights"):
        search.main(args + ["MODEL.WEIGHTS", str(other)])
    with pytest.raises(ValueError, match=r"min_size_test: export 96, config 128"):
        search.main(args + ["MODEL.WEIGHTS", deployed.weights, "INPUT.MIN_SIZE_TEST", "128"])
    # An index of other weights refuses it too (its manifest's weights_sha256).
    with pytest.raises(ValueError, match=f"--export {export} was made from other weights"):
        index_cli.main(
            ["build", "--index", str(tmp_path / "index"), "--config-file", deployed.config]
            + ["--input", deployed.gallery, "--threads", "1", "--export", export]
            + ["MODEL.WEIGHTS", str(other)]
        )
    assert not os.path.exists(tmp_path / "index" / "manifest.json")


def test_search_prepares_the_model_once(deployed, tmp_path, monkeypatch):
    """One predictor per command: the model is folded once, not once per predictor."""
    folds = []
    fold = fast_path.fold_batchnorm
    monkeypatch.setattr(fast_path, "fold_batchnorm", lambda m: folds.append(1) or fold(m))
    args = ["--config-file", deployed.config, "--query", deployed.query, "--box"]
    args += [str(v) for v in deployed.box] + ["--gallery", deployed.gallery]
    search.main(args + ["--out", str(tmp_path / "x.png"), "MODEL.WEIGHTS", deployed.weights])
    assert len(folds) == 1
    predictor = PersonSearchPredictor(deployed.cfg)
    assert fast_path.prepare_inference_model(predictor.model, deployed.cfg) is predictor.model
    assert len(folds) == 2
