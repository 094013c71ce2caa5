"""Calibration: a threshold picked for a false-match rate on one split holds it on another; the
``calibrate`` command end to end on the tiny synthetic split; queries then say "no match"."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from stl_search.index.calibration import Calibration, PairHistogram
from stl_search.index.cli import main
from stl_search.index.session import QuerySession


def _split(rng, num_pos, num_neg):
    """Similarities of a split: positives around 0.6, negatives around 0.1 (heavy-ish tail)."""
    pos = np.clip(rng.normal(0.6, 0.12, num_pos), -1, 1)
    neg = np.clip(rng.normal(0.1, 0.1, num_neg) + 0.05 * rng.standard_t(5, num_neg), -1, 1)
    hist = PairHistogram()
    hist.add(np.r_[pos, neg], np.r_[np.ones(num_pos, bool), np.zeros(num_neg, bool)])
    return hist, pos, neg


@pytest.mark.parametrize("target", [1e-2, 1e-3])
def test_threshold_from_one_split_holds_its_fpr_on_another(target):
    rng = np.random.default_rng(0)
    hist_a, _, neg_a = _split(rng, 2000, 400_000)
    _, pos_b, neg_b = _split(rng, 2000, 400_000)
    cal = Calibration.from_histogram(hist_a, target, "split A", "sha")
    assert cal.threshold_fpr <= target  # on its own split, at most the target
    assert np.mean(neg_a >= cal.threshold) == pytest.approx(cal.threshold_fpr, abs=1e-6)
    held = np.mean(neg_b >= cal.threshold)
    # 400k negatives: the count at 1e-3 is ~400 +- 20 (binomial), at 1e-2 ~4000 +- 63
    assert abs(held - target) <= 0.15 * target, (held, target)
    assert cal.tpr_at(target) == cal.threshold_tpr
    assert np.mean(pos_b >= cal.threshold) == pytest.approx(cal.threshold_tpr, abs=0.03)
    fmr = cal.false_match_rate(np.array([cal.threshold, 0.99, -1.0]))
    assert fmr[0] == cal.threshold_fpr and 1 / cal.num_negative <= fmr[1] < fmr[0] and fmr[2] == 1


def test_too_few_negatives_for_the_target_are_refused():
    hist, _, _ = _split(np.random.default_rng(1), 50, 500)
    with pytest.raises(ValueError, match="500 negative pairs cannot measure .* 0.001"):
        Calibration.from_histogram(hist, 1e-3, "small", None)
    with pytest.raises(ValueError, match="positive and negative pairs, got 0 and 3"):
        empty = PairHistogram()
        empty.add(np.zeros(3), np.zeros(3, bool))
        Calibration.from_histogram(empty, 0.5, "none", None)


def test_calibrate_command_records_the_threshold_and_queries_use_it(
    gallery_index, synthetic, tmp_path
):
    folder = str(tmp_path / "index")
    shutil.copytree(gallery_index, folder)
    cal = main(
        ["calibrate", "--index", folder, "--dataset", "index_syn_query", "--target-fpr", "0.25"]
    )
    saved = json.load(open(os.path.join(folder, "calibration.json")))
    assert os.path.getsize(os.path.join(folder, "calibration.png")) > 0
    assert saved["dataset"] == "index_syn_query" and saved["threshold"] == cal.threshold
    assert saved["num_positive"] > 0 and saved["num_negative"] >= 4
    assert saved["threshold_fpr"] <= 0.25 and set(saved["curve"]) == {"threshold", "fpr", "tpr"}
    session = QuerySession(folder)
    assert session.calibration.threshold == cal.threshold
    probe = session.gallery.embeddings_float32()[0]
    result = session.search(probe, topk=5)
    assert result.threshold_source == "calibration" and result.hits[0].box_id == 0
    rows = result.hit_rows()
    assert all("false_match_rate" in r and "above_threshold" in r for r in rows)
    assert [r["false_match_rate"] for r in rows] == sorted(r["false_match_rate"] for r in rows)
    # a calibration measured with other weights is ignored
    saved["weights_sha256"] = "0" * 64
    with open(os.path.join(folder, "calibration.json"), "w") as f:
        json.dump(saved, f)
    assert QuerySession(folder).calibration is None
    with pytest.raises(KeyError, match="--dataset nope_query is not a registered data set"):
        main(["calibrate", "--index", folder, "--dataset", "nope_query"])
