"""``PersonSearchCheckpointer``: the atomic checkpointer, aware of STL exports when it loads.

An STL export (``stl_search.reid.export``) or a converted ImageNet file initialises only the
backbone and identification net of a person-search model. Loading one, the checkpointer says in
one sentence what it left untouched (instead of Detectron2's list of missing keys) and warns when
the pretraining crops do not cover what the identification RoIs cover. This lives in ``engine``
because it needs both the Re-ID export format and the person-search model.
"""

from __future__ import annotations

from typing import Any

from ..reid.export import crop_size_mismatch, describe_missing_keys
from ..utils.checkpoint import AtomicCheckpointer

__all__ = ["PersonSearchCheckpointer"]


class PersonSearchCheckpointer(AtomicCheckpointer):
    """:class:`AtomicCheckpointer` that reports on STL exports it loads (module docstring)."""

    def _load_model(self, checkpoint: Any) -> Any:
        incompatible = super()._load_model(checkpoint)
        if (
            checkpoint.get("__author__") == "stl-search"
            and incompatible is not None
            and incompatible.missing_keys
        ):
            self.logger.info(describe_missing_keys(incompatible.missing_keys))
        if "reid_input_size" in checkpoint:
            self._check_crop_size(checkpoint["reid_input_size"])
        return incompatible

    def _check_crop_size(self, reid_input_size) -> None:
        model = getattr(self.model, "module", self.model)
        id_pooler = getattr(getattr(model, "roi_heads", None), "id_pooler", None)
        if id_pooler is not None:
            warning = crop_size_mismatch(reid_input_size, id_pooler.output_shape)
            if warning:
                self.logger.warning(warning)
