"""Tiny person-search models exported once per session to both formats (a few seconds each)."""

from __future__ import annotations

import pytest
import torch
from detectron2.modeling import build_model

from stl_search.export import export_person_search

from ..tiny_configs import tiny_person_search_cfg


@pytest.fixture(autouse=True)
def _one_thread(one_seeded_thread):
    """Every test here runs on one seeded thread (see tests/conftest.py)."""


def tiny_export_cfg(mrfp: bool):
    """The tiny model; the MRFP one sees RGB input, so that the runtime's channel flip is tested,
    and is built with the sync-free post-processing (the paper configs' default), which the
    export must replace by the traceable reference path."""
    cfg = tiny_person_search_cfg(mrfp=mrfp)
    if mrfp:
        cfg.INPUT.FORMAT = "RGB"
        cfg.MODEL.PROPOSAL_GENERATOR.NAME = "SyncFreeRPN"
        cfg.MODEL.ROI_HEADS.SYNC_FREE_INFERENCE = True
    return cfg


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``(mrfp, fmt) -> (cfg, model, export_dir)``, built and exported on first use."""
    cache = {}

    def get(mrfp: bool, fmt: str):
        if (mrfp, fmt) not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            torch.manual_seed(0)
            cfg = tiny_export_cfg(mrfp)
            model = build_model(cfg).eval()
            out = str(tmp_path_factory.mktemp(f"{'mrfp' if mrfp else 'baseline'}_{fmt}"))
            export_person_search(model, cfg, out, fmt)
            torch.set_num_threads(threads)
            cache[(mrfp, fmt)] = (cfg, model, out)
        return cache[(mrfp, fmt)]

    return get
