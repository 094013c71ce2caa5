"""``benchmarks/static_nms_rounds.py``: the fewest rounds that settle an NMS, and the whole
script on the tiny synthetic set (the command benchmarks/README.md shows, at tiny sizes)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import torch

from stl_search.data.datasets.synthetic import PRESETS, ensure_generated
from stl_search.modeling.static_postprocess import greedy_nms_mask


def _module(repo_root):
    path = os.path.join(repo_root, "benchmarks", "static_nms_rounds.py")
    sys.path.insert(0, os.path.dirname(path))  # its sibling import (machine.py)
    try:
        spec = importlib.util.spec_from_file_location("static_nms_rounds", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def _chain(n: int) -> torch.Tensor:
    x = torch.arange(n, dtype=torch.float32) * 5
    return torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)


def test_rounds_needed_is_the_fewest_that_settle(repo_root):
    module = _module(repo_root)
    boxes = torch.stack([_chain(9), _chain(9) * torch.tensor([4.0, 1, 1, 1])])
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
    root = tmp_path / "datasets"
    ensure_generated(str(root / "synthetic_prw"), PRESETS["tiny"])
    out = tmp_path / "rounds.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/static_nms_rounds.py", "--images", "2",
         "--pre-nms-topk", "200", "--repeats", "1", "--threads", "1", "--json", str(out)],
        cwd=repo_root,
        env=dict(os.environ, DETECTRON2_DATASETS=str(root)),
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["pre_nms_topk"] == 200 and row["same_boxes"] is True
    assert row["rpn"]["candidates_median"] == 200 and row["rpn"]["rounds_max"] >= 1
    assert row["seconds_per_image"]["static"] > 0
    assert "images past 24 rounds" in proc.stdout
