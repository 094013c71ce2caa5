"""inference_on_person_search with a tiny fake model module."""

from __future__ import annotations

import torch
from torch import nn

from stl_search.evaluation import PersonSearchEvaluator, inference_on_person_search

from . import fixtures as F


class FakePersonSearch(nn.Module):
    """Answers detection for gallery dicts and the query mode for dicts with ``query_boxes``."""

    def __init__(self, gallery):
        super().__init__()
        self.layer = nn.Linear(1, 1)
        _, outs = F.fake_gallery_outputs(gallery)
        self.by_id = {d["image_id"]: o for d, o in zip(gallery, outs)}
        self.calls = []

    def forward(self, batched_inputs):
        self.calls.append(
            (self.training, torch.is_grad_enabled(), "query_boxes" in batched_inputs[0])
        )
        out = []
        for inp in batched_inputs:
            if "query_boxes" in inp:
                out.append(
                    {"query_embedding": torch.from_numpy(F.identity_embedding(inp["identity"]))}
                )
            else:
                out.append(self.by_id[inp["image_id"]])
        return out


def test_inference_on_person_search_runs_both_loaders():
    gname, qname, gallery, queries = F.register_prw()
    model = FakePersonSearch(gallery)
    model.train()
    gallery_loader = [
        [{"image_id": d["image_id"], "height": d["height"], "width": d["width"]}] for d in gallery
    ]
    query_loader = [
        [
            {
                "image_id": q["image_id"],
                "query_boxes": torch.tensor([q["query_box"]]),
                "identity": q["identity"],
                "query_index": q["query_index"],
            }
            for q in queries[:2]
        ],
        [
            {
                "image_id": q["image_id"],
                "query_boxes": torch.tensor([q["query_box"]]),
                "identity": q["identity"],
                "query_index": q["query_index"],
            }
            for q in queries[2:]
        ],
    ]
    ev = PersonSearchEvaluator(gname, qname)
    res = inference_on_person_search(model, gallery_loader, query_loader, ev)
    assert res["search"]["mAP"] > 66.6 and res["detection"]["recall"] == 100.0
    assert len(model.calls) == len(gallery_loader) + len(query_loader)
    assert all(not training and not grad for training, grad, _ in model.calls)
    assert [is_query for *_, is_query in model.calls] == [False] * 5 + [True] * 2
    assert model.training  # restored
