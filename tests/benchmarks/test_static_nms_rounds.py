"""``benchmarks/static_nms_rounds.py``: the fewest rounds that settle an NMS, and the whole
script on the tiny synthetic set (the command benchmarks/README.md shows, at tiny sizes)."""

from __future__ import annotations

import json

import torch

from stl_search.modeling.static_postprocess import greedy_nms_mask

from ..modeling.helpers import chain_boxes
from .helpers import load_benchmark, run_on_tiny_synthetic


def test_rounds_needed_is_the_fewest_that_settle(repo_root):
    module = load_benchmark(repo_root, "static_nms_rounds")
    boxes = torch.stack([chain_boxes(9), chain_boxes(9) * torch.tensor([4.0, 1, 1, 1])])
    boxes[1, :, 2] = boxes[1, :, 0] + 10  # 10 px wide, 10 px gaps: nothing overlaps
    scores = torch.linspace(1, 0.1, 9).expand(2, -1)

    def linear(i):
        r = 1
        while not greedy_nms_mask(boxes[i : i + 1], scores[i : i + 1], None, 0.3, r)[1][0]:
            r += 1
        return r

    needed = module.rounds_needed(boxes, scores, None, 0.3)
    assert needed == [linear(0), linear(1)]
    assert needed[1] == 1 and needed[0] > 5  # a 9-box chain settles one box per round


def test_the_script_runs_on_the_tiny_synthetic_set(repo_root, tmp_path):
    out = tmp_path / "rounds.json"
    stdout = run_on_tiny_synthetic(
        repo_root, tmp_path, "static_nms_rounds.py", "--images", "2", "--pre-nms-topk", "200",
        "--repeats", "1", "--threads", "1", "--json", str(out),
    )  # fmt: skip
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["pre_nms_topk"] == 200 and row["same_boxes"] is True
    assert row["rpn"]["candidates_median"] == 200 and row["rpn"]["rounds_max"] >= 1
    assert row["seconds_per_image"]["static"] > 0
    assert "images past 24 rounds" in stdout
