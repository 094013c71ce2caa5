"""Helpers shared by the export tests."""

from __future__ import annotations

from ..tiny_configs import tiny_person_search_cfg


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
