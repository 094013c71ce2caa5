"""``benchmarks/reduced_store_eval.py``'s scoring: the evaluator's, on projected embeddings."""

from __future__ import annotations

from stl_search.evaluation import PersonSearchEvaluator

from ..evaluation import fixtures as F
from .helpers import load_benchmark


def _filled(evaluator, gallery, queries):
    evaluator.reset()
    evaluator.process(*F.fake_gallery_outputs(gallery))
    evaluator.process_queries(*F.fake_query_outputs(queries))
    return evaluator


def test_projected_scores_beside_the_full_ones(repo_root):
    module = load_benchmark(repo_root, "reduced_store_eval")
    gname, qname, gallery, queries = F.register_prw()
    full = _filled(PersonSearchEvaluator(gname, qname), gallery, queries).evaluate()["search"]
    evaluator = _filled(module.ProjectedSearchEvaluator(gname, qname), gallery, queries)
    rows = module.scores(evaluator, ["pca6", "pca1"])
    assert [r[0] for r in rows] == ["full", "pca6", "pca1"]
    assert rows[0][1:] == (full["mAP"], full["top1"])
    assert rows[1][1:] == rows[0][1:]  # 6 directions hold every identity's embedding
    assert rows[1][1] > rows[2][1]  # one direction cannot tell the identities apart
