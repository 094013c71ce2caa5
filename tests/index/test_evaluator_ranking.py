"""The index's exact ranking is the evaluator's: same boxes, same similarities, same order.

The evaluator's default storage is float32, so this index stores float32 too (``--embedding-dtype
float32``); the default float16 index differs from it by the float16 rounding of the embeddings.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from detectron2.data import DatasetCatalog

from stl_search.data.build import build_person_search_test_loader
from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.evaluation import PersonSearchEvaluator
from stl_search.evaluation.protocol_inputs import gallery_arrays
from stl_search.evaluation.search_kernels import pair_similarities
from stl_search.index.backends import ExactSearcher
from stl_search.index.query import search_index
from stl_search.index.shards import GalleryIndex

from .helpers import build_index


def test_exact_index_ranks_as_the_evaluator(tiny_model, synthetic, tmp_path):
    config, cfg = tiny_model
    predictor = PersonSearchPredictor(cfg)
    # The evaluation's side: its loaders (one image per batch), the model, its evaluator (default
    # float32 storage) and its similarity kernel over the whole gallery.
    evaluator = PersonSearchEvaluator(
        "index_syn_gallery", "index_syn_query", score_thresh=0.0, distributed=False
    )
    with torch.no_grad():
        for inputs in build_person_search_test_loader(cfg, "index_syn_gallery", "test"):
            evaluator.process(inputs, predictor.model(inputs))
        query_inputs = next(iter(build_person_search_test_loader(cfg, "index_syn_query", "query")))
        query = predictor.model(query_inputs)[0]["query_embedding"].numpy()
    dicts = DatasetCatalog.get("index_syn_gallery")
    gallery, _ = gallery_arrays(dicts, evaluator._gallery, {}, np.float32)  # what it scores
    n = len(dicts)
    sims, dets, _ = pair_similarities(
        np.arange(n),
        np.array([0, n]),
        (query / np.linalg.norm(query))[None],
        gallery.embeddings,
        gallery.splits[:-1],
        np.diff(gallery.splits),
    )
    image_of = np.searchsorted(gallery.splits, dets, side="right") - 1
    order = np.argsort(-sims, kind="stable")
    expected = [(dicts[image_of[d]]["image_id"], tuple(gallery.boxes[d])) for d in dets[order]]

    # The index's side: built in batches of one image too, queried through the predictor.
    folder = str(tmp_path / "index")
    build_index(folder, config, synthetic[0], "--batch-size", "1", "--embedding-dtype", "float32")
    index = GalleryIndex.open(folder)
    q = synthetic[1][0]
    embedding = predictor.embed_query(q["file_name"], q["query_box"])
    np.testing.assert_array_equal(embedding, query)
    hits = search_index(index, ExactSearcher(index), embedding, len(index))
    found = [(os.path.basename(h.file_name), tuple(h.box)) for h in hits]

    assert len(found) == len(expected) == gallery.boxes.shape[0]
    np.testing.assert_allclose([h.similarity for h in hits], sims[order], rtol=0, atol=1e-6)
    gaps = np.abs(np.diff(sims[order]))
    clear = np.r_[gaps > 1e-6, True] & np.r_[True, gaps > 1e-6]  # not within 1e-6 of a neighbour
    assert clear.sum() > len(found) // 2
    assert [f for f, c in zip(found, clear) if c] == [e for e, c in zip(expected, clear) if c]
