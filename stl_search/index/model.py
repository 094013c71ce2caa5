"""The model of an index: its config and its weights, identified by their sha256.

An index's embeddings are comparable only with embeddings of the same weights. The manifest keeps
the weights' absolute path (a relative ``MODEL.WEIGHTS`` is resolved when the index is built, so
that no later command depends on its working directory) and their sha256, which is what
identifies them: ``query`` and ``add`` accept a ``MODEL.WEIGHTS`` override (the file moved) and
refuse any file, the recorded one included, whose hash differs.
"""

from __future__ import annotations

import os
from typing import Dict

from detectron2.config import CfgNode

from ..engine.predictor import PersonSearchPredictor
from ..engine.setup import load_config
from ..utils.io import sha256_of

__all__ = ["config_of", "resolve_weights", "index_predictor"]


def config_of(plan_or_manifest: Dict, weights: str = None) -> CfgNode:
    """The config an index was built with (stored in its plan and manifest as YAML), with
    ``MODEL.WEIGHTS`` set to ``weights`` when given."""
    cfg = load_config(stored=CfgNode.load_cfg(plan_or_manifest["config"]))
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return cfg


def resolve_weights(plan_or_manifest: Dict, override: str = None) -> str:
    """The absolute path of the index's weights: ``override`` (a ``MODEL.WEIGHTS`` given to
    ``query`` or ``add``) or the recorded path, checked against the recorded sha256.

    Raises:
        FileNotFoundError: the file does not exist (for the recorded path: how to override it).
        ValueError: its sha256 is not the index's, naming both files and both hashes.
    """
    expected, recorded = plan_or_manifest.get("weights_sha256"), plan_or_manifest.get("weights")
    if not expected:
        raise ValueError("the index was built with an in-memory model: it has no weights to load")
    path = override or recorded
    if not os.path.isfile(path):
        if override:
            raise FileNotFoundError(f"MODEL.WEIGHTS {override} does not exist")
        raise FileNotFoundError(
            f"the index's weights {recorded} do not exist (moved?): pass MODEL.WEIGHTS PATH, "
            f"a file with sha256 {expected}"
        )
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"MODEL.WEIGHTS {path} (sha256 {actual}) are not the weights the index was built "
            f"with, {recorded} (sha256 {expected}): their embeddings are not comparable"
        )
    return os.path.abspath(path)


def index_predictor(plan_or_manifest: Dict, weights: str = None) -> PersonSearchPredictor:
    """The predictor that embeds for an index: its config, its weights (checked by
    :func:`resolve_weights`; ``weights`` overrides their path)."""
    return PersonSearchPredictor(
        config_of(plan_or_manifest, resolve_weights(plan_or_manifest, weights))
    )
