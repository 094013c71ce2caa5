"""Context bipartite graph matching (CBGM) in the metric core: agreement with a brute-force
reference, what it changes, and the query context taken from the gallery."""

from __future__ import annotations

import numpy as np
import pytest

from stl_search import evaluation as M

from .metric_cases import compare, protocol_for, rand_emb, random_case, to_gallery


def test_cbgm_agrees_with_brute_force_reference():
    rng = np.random.default_rng(5)
    dim = 6
    for trial in range(15):
        images, queries = random_case(rng, n_images=7, dim=dim)
        for q in queries:
            q["context"] = [rand_emb(rng, dim, False) for _ in range(int(rng.integers(0, 4)))]
        counts = [len(q["context"]) for q in queries]
        ctx = np.array([c for q in queries for c in q["context"]]).reshape(-1, dim)
        for mode in ("explicit", "all"):
            cb = M.CBGMContext(
                k1=int(rng.integers(1, 6)),
                k2=3,
                context_splits=np.r_[0, np.cumsum(counts)],
                context_embeddings=ctx,
            )
            compare(
                images, queries, mode, dim, cbgm=cb, strategy="pairs" if trial % 2 else "matmul"
            )


def test_cbgm_changes_scores_and_is_noop_without_context():
    dim = 4
    e = np.eye(dim)
    t = [0, 0, 40, 80]
    # Image 0: the target (weakly similar) stands beside someone who matches the query's companion.
    images = [
        {
            "camera": 1,
            "gts": [(t, 1)],
            "dets": [(t, 0.9, 0.6 * e[0] + 0.8 * e[1]), ([50, 0, 90, 80], 0.9, e[2])],
        },
        {
            "camera": 1,
            "gts": [],
            "dets": [([0, 0, 40, 80], 0.9, 0.7 * e[0] + np.sqrt(0.51) * e[3])],
        },
    ]
    q = {
        "emb": e[0],
        "identity": 1,
        "image": -1,
        "camera": 2,
        "listing": [(0, t), (1, None)],
        "context": [e[2]],
    }
    gal = to_gallery(images, dim)
    gq = protocol_for("explicit", images, [q])
    plain = M.search_metrics(gal, e[:1], gq)
    assert plain.ap[0] == pytest.approx(0.5)
    cb = M.CBGMContext(k1=3, k2=2, context_splits=np.array([0, 1]), context_embeddings=e[2:3])
    reranked = M.search_metrics(gal, e[:1], gq, cbgm=cb)
    assert reranked.ap[0] == pytest.approx(
        1.0
    )  # matched pair weights 0.6 and 1.0 -> target gets 1.0
    none = M.CBGMContext(
        k1=3, k2=2, context_splits=np.array([0, 0]), context_embeddings=np.zeros((0, dim))
    )
    np.testing.assert_array_equal(M.search_metrics(gal, e[:1], gq, cbgm=none).ap, plain.ap)


def test_query_context_from_gallery():
    dim = 3
    e = np.eye(dim)
    images = [
        {
            "camera": 1,
            "gts": [],
            "dets": [
                ([0, 0, 40, 80], 0.95, e[0]),
                ([1, 0, 41, 80], 0.6, e[1]),
                ([100, 0, 140, 80], 0.7, e[1]),
                ([200, 0, 240, 80], 0.9, e[2]),
                ([300, 0, 340, 80], 0.4, e[2]),
            ],
        }
    ]
    gal = to_gallery(images, dim)
    ctx = M.query_context_from_gallery(
        gal, np.array([0, -1]), np.array([[0, 0, 40, 80], [0, 0, 1, 1]]), k2=4
    )
    assert ctx.context_splits.tolist() == [0, 2, 2]  # overlapping and below-threshold ones dropped
    np.testing.assert_array_equal(ctx.context_embeddings, [e[2], e[1]])  # most confident first
