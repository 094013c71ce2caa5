"""The demo's search step (projects/stl_search/search_demo.py) on the tiny index: the query
stated, hits marked against the ground truth, the rank of the first right hit, and a video of
another camera indexed and searched for the same person."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import cv2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _demo_module():
    path = os.path.join(REPO, "projects", "stl_search", "search_demo.py")
    spec = importlib.util.spec_from_file_location("search_demo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_demo_marks_hits_and_finds_sightings_in_a_video(
    gallery_index, synthetic, tmp_path, capsys
):
    demo = _demo_module()
    query = synthetic[1][0]
    out = str(tmp_path / "demo")
    index = str(tmp_path / "index")
    shutil.copytree(gallery_index, index)
    demo.main(
        ["--index", index, "--out", out, "--query-split", "index_syn_query"]
        + ["--target-fpr", "0.25"]
    )
    printed = capsys.readouterr().out
    assert f"query: {query['image_id']} box" in printed
    assert f"identity {query['identity']} (camera {query['camera_id']})" in printed
    assert "first correct hit at rank" in printed
    assert cv2.imread(out + ".png") is not None and os.path.isfile(out + "_hits.csv")
    marked = [line for line in printed.splitlines() if line.strip().endswith(".jpg")]
    assert len(marked) == min(10, json.load(open(out + ".json"))["hits"][-1]["rank"])
    assert os.path.isfile(os.path.join(index, "calibration.json"))
    if "annotated at" in printed:  # the tiny set's query identity is on another camera
        video = json.load(open(out + "_video.json"))
        assert video["sightings"] and video["sightings"][0]["kind"] == "video"
        assert "sightings" in printed or "#  best sim" in printed
        assert os.path.getsize(out + "_video_clips/q1_rank1.mp4") > 0
