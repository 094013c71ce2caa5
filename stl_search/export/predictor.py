"""The predictor of the search and index commands on an export folder (``--export DIR``).

``exported_predictor(cfg, export_dir, weights_sha256)`` is ``PersonSearchPredictor(cfg,
model=ExportedPersonSearch(export_dir))`` after two checks, so that an index never mixes the
embeddings of two models:

- the export was made from the weights the caller names by their sha256 (an index: its
  manifest's ``weights_sha256``; the search command: ``MODEL.WEIGHTS``'s): ``export.json``
  records it (``model.weights_sha256``);
- ``cfg`` resizes, orders channels and thresholds as the export says
  (:meth:`ExportedPersonSearch.check_config`, through the predictor's preparation).

The runtime's score threshold is the config's ``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` (a graph
input), so a config that only changes the threshold needs no new export.
"""

from __future__ import annotations

from typing import Optional

from detectron2.config import CfgNode

from ..engine.predictor import PersonSearchPredictor
from ..utils.io import sha256_of
from .runtime import ExportedPersonSearch

__all__ = ["exported_predictor"]


def exported_predictor(
    cfg: CfgNode,
    export_dir: str,
    weights_sha256: Optional[str] = None,
    num_threads: Optional[int] = None,
) -> PersonSearchPredictor:
    """A :class:`PersonSearchPredictor` running the graphs of ``export_dir``.

    Args:
        cfg: the exported model's config (its resize, channel order and fixed settings).
        export_dir: a folder written by ``python -m stl_search.export`` (ONNX or TorchScript).
        weights_sha256: the sha256 of the weights the export must have been made from; None:
            that of ``cfg.MODEL.WEIGHTS`` when it names a file (else nothing to compare).
        num_threads: onnxruntime's intra-op threads (None: onnxruntime's choice).

    Raises:
        ValueError: naming the export folder when it was made from other weights, or with other
            settings than ``cfg`` (naming each).
    """
    exported = ExportedPersonSearch(
        export_dir, num_threads=num_threads, score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
    )
    if weights_sha256 is None:
        weights_sha256 = sha256_of(cfg.MODEL.WEIGHTS, missing_ok=True)
    if weights_sha256 is not None and exported.weights_sha256 != weights_sha256:
        raise ValueError(
            f"--export {export_dir} was made from other weights (sha256 "
            f"{str(exported.weights_sha256)[:16]}, export.json model.weights_sha256) than "
            f"these (sha256 {weights_sha256[:16]}): export this checkpoint again, or use the "
            "export's weights"
        )
    return PersonSearchPredictor(cfg, model=exported)
