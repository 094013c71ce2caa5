"""Query answers and argument errors: no hits is a normal answer, counts must be positive and are
refused by name, degenerate query boxes are refused, ``search`` names its own flags."""

from __future__ import annotations

import json
import os

import pytest

from stl_search import search
from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.index import folder_search
from stl_search.index.cli import main

from .helpers import build_index


def _query_args(folder: str, synthetic, out) -> list:
    q = synthetic[1][0]
    box = [str(v) for v in q["query_box"]]
    return ["query", "--index", folder, "--query", q["file_name"], "--box", *box, "--out", str(out)]


@pytest.mark.parametrize("topk", ["0", "-1", "two"])
def test_topk_must_be_positive(gallery_index, synthetic, tmp_path, capsys, topk):
    with pytest.raises(SystemExit):
        main([*_query_args(gallery_index, synthetic, tmp_path / "q"), "--topk", topk])
    assert f"argument --topk: must be a positive integer, got '{topk}'" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--topk", "--candidates"])
def test_search_counts_must_be_positive(gallery_index, synthetic, tmp_path, capsys, flag):
    args = _query_args(gallery_index, synthetic, tmp_path / "q")
    with pytest.raises(SystemExit):
        main(["search", *args[1:], flag, "0"])
    assert f"argument {flag}: must be a positive integer, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--batch-size", "--images-per-shard"])
def test_batch_and_shard_sizes_must_be_positive(tiny_model, two_images, tmp_path, capsys, flag):
    with pytest.raises(SystemExit):
        build_index(str(tmp_path / "index"), tiny_model[0], two_images, flag, "0")
    assert f"argument {flag}: must be a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()


def test_nothing_detected_is_an_empty_answer(tiny_model, synthetic, two_images, tmp_path):
    folder = str(tmp_path / "index")
    build_index(folder, tiny_model[0], two_images, "TEST.PERSON_SEARCH.SCORE_THRESH", "2.0")
    out = tmp_path / "q"
    assert main([*_query_args(folder, synthetic, out), "--topk", "3"]) == []
    with open(f"{out}.json") as f:
        assert json.load(f)["hits"] == []
    assert len(open(f"{out}.csv").read().splitlines()) == 1  # the header
    assert os.path.isfile(f"{out}.png")

    cfg = tiny_model[1].clone()
    cfg.TEST.PERSON_SEARCH.SCORE_THRESH = 2.0
    q = synthetic[1][0]
    files = folder_search.list_gallery(two_images)
    predictor = PersonSearchPredictor(cfg)
    assert folder_search.search(predictor, q["file_name"], q["query_box"], files) == []


def test_search_topk_must_be_positive(tmp_path, capsys):
    args = ["--config-file", "x.yaml", "--query", "q.jpg", "--box", "1", "2", "30", "40"]
    with pytest.raises(SystemExit):
        search.main([*args, "--gallery", str(tmp_path), "--topk", "-1"])
    assert "argument --topk: must be a positive integer, got '-1'" in capsys.readouterr().err


def test_search_names_its_gallery_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"--gallery {tmp_path} holds or matches no"):
        folder_search.list_gallery(str(tmp_path))


@pytest.mark.parametrize(
    "box", [["20", "20", "20.5", "60"], ["20", "20", "40", "20.9"], ["20", "20", "nan", "60"]]
)
def test_a_degenerate_query_box_is_refused(gallery_index, tiny_model, synthetic, tmp_path, box):
    q = synthetic[1][0]
    args = ["query", "--index", gallery_index, "--query", q["file_name"], "--box", *box]
    with pytest.raises(ValueError, match=r"is not a person box: x2 - x1 and y2 - y1 must be at"):
        main([*args, "--out", str(tmp_path / "q")])
    assert not os.path.exists(tmp_path / "q.json")
    one_pixel = PersonSearchPredictor(tiny_model[1]).embed_query(q["file_name"], [20, 20, 21, 21])
    assert one_pixel.shape == (256,)
