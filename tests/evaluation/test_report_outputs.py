"""The evaluator's optional outputs: the authors' search rule beside SeqNet's, the retrieval
grid."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from detectron2.config import get_cfg

from stl_search.config import add_stl_search_config
from stl_search.evaluation import PersonSearchEvaluator
from stl_search.evaluation.retrieval_grid import FALSE_COLOUR, QUERY_COLOUR, TRUE_COLOUR

from . import fixtures as F
from .helpers import run


def test_authors_protocol_reported_beside_seqnet():
    gname, qname, gallery, queries = F.register_prw()
    cfg = add_stl_search_config(get_cfg())
    cfg.TEST.PERSON_SEARCH.PROTOCOL = "authors"
    cfg.TEST.PERSON_SEARCH.RETRIEVAL_GRID = (0, 0)
    res = run(PersonSearchEvaluator(cfg, gname, qname), gallery, queries)
    assert list(res) == [
        "search",
        "search_multi_view",
        "search_authors",
        "search_authors_multi_view",
        "detection",
    ]
    # Detections equal to the ground-truth boxes: both rules see the same true positives.
    assert res["search_authors"] == pytest.approx(res["search"])
    assert res["search_authors_multi_view"] == pytest.approx(res["search_multi_view"])
    cfg.TEST.PERSON_SEARCH.PROTOCOL = "seqnet"
    assert "search_authors" not in run(PersonSearchEvaluator(cfg, gname, qname), gallery, queries)
    cfg.TEST.PERSON_SEARCH.PROTOCOL = "paper"
    with pytest.raises(ValueError, match="TEST.PERSON_SEARCH.PROTOCOL"):
        PersonSearchEvaluator(cfg, gname, qname)


def test_retrieval_grid_frames_true_and_false_hits(tmp_path):
    gname, qname, gallery, queries = F.register_prw()
    rng = np.random.default_rng(0)
    for d in gallery + queries:  # real images behind the registered dicts
        path = tmp_path / d["image_id"]
        if not path.exists():
            cv2.imwrite(str(path), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
        d["file_name"] = str(path)
    ev = PersonSearchEvaluator(gname, qname, output_dir=str(tmp_path), retrieval_grid=(2, 3))
    run(ev, gallery, queries)
    grid = cv2.imread(str(tmp_path / f"retrieval_{gname}.png"))
    cell_h, cell_w = 128 + 8 + 16, 64 + 8  # crop + frame, label strip
    assert grid.shape == (2 * (cell_h + 2), 4 * cell_w, 3)  # queries 0 and 2, query + 3 hits

    def frame(row: int, col: int) -> tuple:
        return tuple(int(v) for v in grid[row * (cell_h + 2) + 1, col * cell_w + 1])

    # Query 0 (identity 1): its two other frames rank first (true), then another person (false).
    assert [frame(0, c) for c in range(4)] == [QUERY_COLOUR, TRUE_COLOUR, TRUE_COLOUR, FALSE_COLOUR]
    # Query 2 (identity 3) is in no other frame: every hit is false.
    assert [frame(1, c) for c in range(1, 4)] == [FALSE_COLOUR] * 3
