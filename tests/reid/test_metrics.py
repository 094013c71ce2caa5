"""Re-ID mAP / CMC on crops: vectorised implementation against a per-query loop."""

import numpy as np
import pytest

from stl_search.reid.evaluation import reid_metrics


def _loop_reference(qf, gf, qi, gi, qc, gc, qn, gn):
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    aps, r1 = [], []
    for q in range(len(qi)):
        order = np.argsort(-(gf @ qf[q]), kind="stable")
        ranked = []
        for g in order:
            junk = gi[g] < 0 or (
                gi[g] == qi[q] and ((qc[q] >= 0 and qc[q] == gc[g]) or qn[q] == gn[g])
            )
            if not junk:
                ranked.append(gi[g] == qi[q])
        if not any(ranked):
            continue
        hits, precisions = 0, []
        for k, m in enumerate(ranked, 1):
            if m:
                hits += 1
                precisions.append(hits / k)
        aps.append(np.mean(precisions))
        r1.append(float(ranked[0]))
    return 100 * np.mean(aps), 100 * np.mean(r1), len(aps)


@pytest.mark.parametrize("with_cams", [True, False])
def test_matches_loop_reference(with_cams):
    rng = np.random.default_rng(0)
    nq, ng, d = 23, 80, 8
    qi, gi = rng.integers(0, 10, nq), rng.integers(-1, 10, ng)
    qc = rng.integers(0, 3, nq) if with_cams else np.full(nq, -1)
    gc = rng.integers(0, 3, ng) if with_cams else np.full(ng, -1)
    qn, gn = (
        [f"img{i}" for i in rng.integers(0, 30, nq)],
        [f"img{i}" for i in rng.integers(0, 30, ng)],
    )
    centres = rng.normal(size=(10, d))
    qf = centres[qi] + rng.normal(size=(nq, d))
    gf = centres[np.maximum(gi, 0)] + rng.normal(size=(ng, d))
    out = reid_metrics(qf, gf, qi, gi, qc, gc, qn, gn, chunk_size=7)
    ref_map, ref_r1, n = _loop_reference(qf, gf, qi, gi, qc, gc, qn, gn)
    assert out["mAP"] == pytest.approx(ref_map)
    assert out["rank1"] == pytest.approx(ref_r1)
    assert out["num_queries"] == n and out["num_skipped"] == nq - n


def test_perfect_and_own_crop_excluded():
    f = np.eye(4)
    # the query's own crop sits in the gallery (same image): it must not count as a match
    out = reid_metrics(
        f[:2],
        np.concatenate([f[:2], f[:2] + 0.1]),
        [0, 1],
        [0, 1, 0, 1],
        query_images=["a", "b"],
        gallery_images=["a", "b", "c", "d"],
    )
    assert out["mAP"] == 100.0 and out["rank1"] == 100.0 and out["num_queries"] == 2
