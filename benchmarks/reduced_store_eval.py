#!/usr/bin/env python
"""Search mAP / top-1 of a trained model with its embeddings projected as a reduced store does.

    python benchmarks/reduced_store_eval.py --weights W [--config-file CFG]
        [--reduce pca128 pca64 opq128] [KEY VALUE ...]

One inference pass over the config's first test gallery and its queries (the evaluator's own
loaders and protocol), then the evaluator's scoring once with the full embeddings and once per
``--reduce`` value: the gallery's kept embeddings train the projection
(:func:`stl_search.index.backends.fit_projection`, the chain an index's ``--reduce`` store
uses), and gallery and query embeddings are projected and re-normalised before the same
scoring. It answers what the reduction costs in the evaluator's terms; recall against exact
search is what ``index train`` prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402

import stl_search  # noqa: E402,F401  (registers the model and the synthetic data set)
from stl_search.engine.setup import load_config  # noqa: E402
from stl_search.engine.trainer import PersonSearchTrainer, query_split_for  # noqa: E402
from stl_search.evaluation import PersonSearchEvaluator, inference_on_person_search  # noqa: E402
from stl_search.index.backends import fit_projection  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402

REPO = os.path.dirname(HERE)
CONFIG = os.path.join("configs", "synthetic", "person_search.yaml")  # relative to REPO


class ProjectedSearchEvaluator(PersonSearchEvaluator):
    """:class:`PersonSearchEvaluator` whose scoring sees the embeddings projected by ``reduce``
    (``None``: the full embeddings), the projection trained on the gallery's."""

    reduce = None

    def _evaluate(self, preds, query_embs):
        if not self.reduce:
            return super()._evaluate(preds, query_embs)
        gallery = np.concatenate([emb for _, _, emb in preds.values()])
        project = fit_projection(gallery.astype(np.float32), self.reduce)
        preds = {k: (b, s, project(e).astype(e.dtype)) for k, (b, s, e) in preds.items()}
        query_embs = {i: project(q[None])[0] for i, q in query_embs.items()}
        return super()._evaluate(preds, query_embs)


def scores(evaluator: ProjectedSearchEvaluator, reductions) -> list:
    """``(name, mAP, top-1)`` with the full embeddings, then per reduction (one inference)."""
    rows = []
    for reduce in [None, *reductions]:
        evaluator.reduce = reduce
        search = evaluator.evaluate()["search"]
        rows.append((reduce or "full", search["mAP"], search["top1"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--weights", required=True, help="trained model_final.pth")
    parser.add_argument(
        "--config-file", default=CONFIG, help="the model's config (relative: to the repository)"
    )
    parser.add_argument(
        "--reduce",
        nargs="+",
        default=["pca128", "pca64", "opq128"],
        help="projections, as index --reduce",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(os.path.join(REPO, args.config_file), ["OUTPUT_DIR", out, *args.opts])
        model = PersonSearchTrainer.build_model(cfg)
        DetectionCheckpointer(model).load(args.weights)
        gallery = cfg.DATASETS.TEST[0]
        query = query_split_for(cfg, gallery)
        evaluator = ProjectedSearchEvaluator(cfg, gallery, query, out)
        inference_on_person_search(
            model,
            PersonSearchTrainer.build_test_loader(cfg, gallery, "test"),
            PersonSearchTrainer.build_test_loader(cfg, query, "query"),
            evaluator,
        )
        rows = scores(evaluator, args.reduce)
    print(f"{args.weights} on {gallery}: embeddings of {cfg.MODEL.ID_HEAD.EMBEDDING_DIM} dims")
    print("| embeddings | mAP | top-1 |\n|---|---|---|")
    for name, mean_ap, top1 in rows:
        print(f"| {name} | {mean_ap:.2f} | {top1:.2f} |")


if __name__ == "__main__":
    main()
