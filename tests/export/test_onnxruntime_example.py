"""``export.json`` names the exact pre-processing, and ``examples/onnxruntime_search.py`` (numpy,
Pillow, onnxruntime; torch cannot even be imported) reproduces PyTorch's search with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import PIL
from PIL import Image

from stl_search.data.mapper import PersonSearchDatasetMapper
from stl_search.engine.predictor import PersonSearchPredictor


def test_export_json_names_the_exact_resize(deployed):
    with open(os.path.join(deployed.exports["onnx"], "export.json")) as f:
        desc = json.load(f)
    pre = desc["preprocessing"]
    assert (pre["channel_order"], pre["layout"], pre["dtype"]) == ("RGB", "CHW", "uint8")
    resize = pre["resize"]
    assert resize["library"] == "Pillow" and "PIL.Image.BILINEAR" in resize["filter"]
    assert "not OpenCV INTER_LINEAR" in resize["filter"]
    assert "int(new_h + 0.5)" in resize["target_size"] and "EXIF" in resize["input"]
    assert desc["versions"]["pillow"] == PIL.__version__
    # The stated call gives the mapper's pixels exactly, on a downscale and an upscale.
    mapper = PersonSearchDatasetMapper(deployed.cfg, mode="test")
    rng = np.random.default_rng(0)
    for h, w, new_h, new_w in [(300, 221, 130, 96), (50, 80, 96, 154)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = mapper({"file_name": "x", "image": image, "height": h, "width": w})["image"]
        resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
        np.testing.assert_array_equal(expected.numpy(), resized.transpose(2, 0, 1))


def test_onnxruntime_example_matches_pytorch(deployed, repo_root, tmp_path):
    """Gallery scenes of 300x220, 150x400 and 200x260 (the export's example: 96x144)."""
    out = tmp_path / "hits.json"
    argv = ["--export", deployed.exports["onnx"], "--query", deployed.query, "--box"]
    argv += [str(v) for v in deployed.box] + ["--gallery", deployed.gallery, "--threads", "1"]
    argv += ["--json", str(out)]
    script = os.path.join(repo_root, "examples", "onnxruntime_search.py")
    # As `python examples/onnxruntime_search.py ARGS`, with torch made unimportable.
    run = (
        "import runpy, sys; sys.modules['torch'] = None; "
        f"sys.argv = [{script!r}] + {argv!r}; runpy.run_path({script!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert deployed.gallery in result.stdout
    hits = json.loads(out.read_text())["hits"]

    predictor = PersonSearchPredictor(deployed.cfg)
    query = predictor.embed_query(deployed.query, deployed.box)
    reference = {}
    for name in sorted(os.listdir(deployed.gallery)):
        path = os.path.join(deployed.gallery, name)
        (detections,) = predictor.detect([path])
        reference[path] = (detections.boxes, detections.embeddings @ query)
    assert len(hits) == sum(len(boxes) for boxes, _ in reference.values()) > 0
    similarities = [h["similarity"] for h in hits]
    assert similarities == sorted(similarities, reverse=True)
    for hit in hits:
        boxes, sims = reference[hit["file_name"]]
        nearest = np.abs(boxes - np.array(hit["box"])).max(axis=1).argmin()
        assert np.abs(boxes[nearest] - hit["box"]).max() <= 1.0
        assert abs(sims[nearest] - hit["similarity"]) <= 2e-3
