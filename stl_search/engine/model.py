"""Building the person-search model for training and for inference.

The model's identification loss needs the number of labeled training identities (its
classifier's classes) and, for the class-balanced CE, the labeled boxes per identity. ``modeling``
reads both from the config only (``MODEL.PERSON_SEARCH.NUM_IDENTITIES`` / ``IDENTITY_COUNTS``);
they are resolved here, before the model is built:

- for training, from the training set ``DATASETS.TRAIN[0]`` (the set that defines the contiguous
  ``person_id`` labels): :func:`resolve_training_metadata`;
- for inference (``--eval-only``, search), from the weights file's classifier, so that no training
  set need be registered or present: :func:`resolve_inference_metadata`. The classifier is not used
  at inference; sizing it from the weights only lets them load without a shape mismatch.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from ..data.datasets import num_training_identities
from ..modeling.losses import identity_instance_counts
from ..utils.checkpoint import newest_complete_checkpoint, read_weights_file
from .checkpoint import PersonSearchCheckpointer

__all__ = [
    "build_inference_model",
    "classifier_size_in_weights",
    "resolve_inference_metadata",
    "resolve_training_metadata",
]

#: State-dict keys whose first dimension is the number of identities (CE family, OIM).
CLASSIFIER_KEYS = ("roi_heads.id_loss.classifier.weight", "roi_heads.id_loss.lut")


def _with(cfg: CfgNode, **person_search: object) -> CfgNode:
    cfg = cfg.clone()
    frozen = cfg.is_frozen()
    cfg.defrost()
    for key, value in person_search.items():
        setattr(cfg.MODEL.PERSON_SEARCH, key, value)
    if frozen:
        cfg.freeze()
    return cfg


def resolve_training_metadata(cfg: CfgNode) -> CfgNode:
    """A copy of ``cfg`` with ``NUM_IDENTITIES`` (when 0) and, for ``CB_CE``, ``IDENTITY_COUNTS``
    (when empty) read from the training set ``DATASETS.TRAIN[0]``.

    Raises:
        ValueError: when they are needed and ``DATASETS.TRAIN`` is empty or has no labeled identity.
    """
    ps = cfg.MODEL.PERSON_SEARCH
    needs_counts = ps.ID_LOSS.upper() == "CB_CE" and not ps.IDENTITY_COUNTS
    if ps.NUM_IDENTITIES > 0 and not needs_counts:
        return cfg
    if not cfg.DATASETS.TRAIN:
        raise ValueError(
            "MODEL.PERSON_SEARCH.NUM_IDENTITIES is 0 (or IDENTITY_COUNTS empty with CB_CE) and "
            "DATASETS.TRAIN is empty: nothing to read them from"
        )
    train_name = cfg.DATASETS.TRAIN[0]
    num_ids = ps.NUM_IDENTITIES if ps.NUM_IDENTITIES > 0 else num_training_identities(train_name)
    if num_ids <= 0:
        raise ValueError(f"training set {train_name} has no labeled identities")
    resolved = {"NUM_IDENTITIES": num_ids}
    if needs_counts:
        counts = identity_instance_counts(DatasetCatalog.get(train_name), num_ids)
        resolved["IDENTITY_COUNTS"] = [int(c) for c in counts.tolist()]
    return _with(cfg, **resolved)


def classifier_size_in_weights(weights_file: str) -> Optional[int]:
    """Number of identities of the classifier (or OIM look-up table) saved in ``weights_file``;
    ``None`` when the file holds none (an STL export, converted ImageNet weights)."""
    loaded = read_weights_file(weights_file)
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else {}
    for key in CLASSIFIER_KEYS:
        if isinstance(state.get(key), torch.Tensor):
            return int(state[key].shape[0])
    return None


def resolve_inference_metadata(cfg: CfgNode, weights_file: str) -> CfgNode:
    """A copy of ``cfg`` whose identity metadata lets ``weights_file`` load into a model built for
    inference, without the training set.

    ``NUM_IDENTITIES`` 0 takes the size of the file's classifier; a file without one (its model
    was never trained for person search) gets a 1-class classifier, left at its initialisation and
    unused. ``CB_CE`` weights are not saved in weights files and not used at inference: empty
    ``IDENTITY_COUNTS`` become one box per identity.
    """
    ps = cfg.MODEL.PERSON_SEARCH
    num_ids = ps.NUM_IDENTITIES
    if num_ids <= 0:
        if not os.path.isfile(weights_file):
            raise FileNotFoundError(
                f"MODEL.WEIGHTS {weights_file!r}: no such file (an inference model is sized from "
                "its classifier when MODEL.PERSON_SEARCH.NUM_IDENTITIES is 0)"
            )
        num_ids = classifier_size_in_weights(weights_file) or 1
    resolved = {"NUM_IDENTITIES": num_ids}
    if ps.ID_LOSS.upper() == "CB_CE" and not ps.IDENTITY_COUNTS:
        resolved["IDENTITY_COUNTS"] = [1] * num_ids
    return _with(cfg, **resolved)


def build_inference_model(cfg: CfgNode, resume: bool = False) -> torch.nn.Module:
    """The model of ``cfg`` in eval mode with its weights loaded: ``MODEL.WEIGHTS``, or with
    ``resume`` the last complete checkpoint of ``OUTPUT_DIR`` when there is one (as
    ``--eval-only --resume`` does). Needs no training set (:func:`resolve_inference_metadata`).

    Raises:
        WeightsMismatchError: when a model weight is missing from the file or has another shape
            (a random or wrongly shaped model is never evaluated).
    """
    weights = (newest_complete_checkpoint(cfg.OUTPUT_DIR) if resume else None) or cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError("set MODEL.WEIGHTS to a trained person-search checkpoint")
    model = build_model(resolve_inference_metadata(cfg, weights))
    PersonSearchCheckpointer(model, save_dir=cfg.OUTPUT_DIR).load(weights)
    model.eval()
    return model
