"""The test loader's batches (``TEST.IMS_PER_BATCH``): same images in the same order as one per
batch, and the tiny model gives the same detections and embeddings on them."""

from __future__ import annotations

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from stl_search.config import add_stl_search_config
from stl_search.data import register_prw
from stl_search.data.build import build_person_search_test_loader

from ..tiny_configs import tiny_person_search_cfg


def _cfg():
    cfg = add_stl_search_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 64, 100
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


@pytest.mark.parametrize("mode", ["test", "query"])
def test_batches_hold_the_single_image_batches_in_order(prw_root, unique_prefix, mode):
    _, gallery, query = register_prw(unique_prefix, prw_root)
    name = gallery if mode == "test" else query
    cfg = _cfg()
    assert cfg.TEST.IMS_PER_BATCH == 1
    ones = [b for b in build_person_search_test_loader(cfg, name, mode)]
    assert all(len(b) == 1 for b in ones)
    cfg.TEST.IMS_PER_BATCH = 2
    twos = list(build_person_search_test_loader(cfg, name, mode))
    assert [len(b) for b in twos] == [2] * (len(ones) // 2) + [1] * (len(ones) % 2)
    flat = [x for b in twos for x in b]
    assert [x["file_name"] for x in flat] == [b[0]["file_name"] for b in ones]
    assert all(torch.equal(x["image"], b[0]["image"]) for x, b in zip(flat, ones))
    assert len(build_person_search_test_loader(cfg, name, mode, batch_size=5)) == 1


def test_bad_batch_size_is_named(prw_root, unique_prefix):
    _, gallery, _ = register_prw(unique_prefix, prw_root)
    cfg = _cfg()
    cfg.TEST.IMS_PER_BATCH = 0
    with pytest.raises(ValueError, match="TEST.IMS_PER_BATCH"):
        build_person_search_test_loader(cfg, gallery)


def test_tiny_model_gives_the_same_results_batched(prw_root, unique_prefix, one_seeded_thread):
    """Gallery images of the fixture (several sizes) batched by 3: boxes within 0.5 px in the
    same order, embedding cosine >= 0.9999, against one image per batch."""
    _, gallery, _ = register_prw(unique_prefix, prw_root)
    cfg = tiny_person_search_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 64, 100
    cfg.DATALOADER.NUM_WORKERS = 0
    model = build_model(cfg).eval()
    results = {}
    for batch in (1, 3):
        cfg.TEST.IMS_PER_BATCH = batch
        with torch.no_grad():
            results[batch] = [
                o["instances"]
                for b in build_person_search_test_loader(cfg, gallery)
                for o in model(b)
            ]
    assert (
        len(
            {
                tuple(x["image"].shape)
                for b in build_person_search_test_loader(cfg, gallery)
                for x in b
            }
        )
        > 1
    )
    for a, b in zip(results[1], results[3], strict=True):
        assert len(a) == len(b) > 0
        assert (a.pred_boxes.tensor - b.pred_boxes.tensor).abs().max().item() <= 0.5
        assert (a.pred_embeddings * b.pred_embeddings).sum(dim=1).min().item() >= 0.9999
