"""``PersonSearchCheckpointer``: the atomic checkpointer, aware of STL exports when it loads, and
strict about weights that do not fit the person-search model.

An STL export (``stl_search.reid.stl_init``) or a converted ImageNet file initialises only the
backbone and identification net of a person-search model. Loading one, the checkpointer says in
one sentence what it left untouched (instead of Detectron2's list of missing keys) and warns when
the pretraining crops do not cover what the identification RoIs cover. Which weights may be
missing depends on why the file is loaded:

- an initialisation (``MODEL.WEIGHTS`` of a training run that does not resume): only the parts
  the STL initialisation leaves to their initialisers (``PERSON_SEARCH_UNINITIALISED``: RPN, box
  head and predictor, ID classifier), and the embedding BN when the file holds none (ImageNet
  conversions). Anything else missing or misshapen is an error, unless
  ``MODEL.ALLOW_PARTIAL_WEIGHTS`` (then a warning);
- a resume: nothing may be missing or misshapen;
- a plain :meth:`load` (``--eval-only``, search, export of a trained model): nothing but the ID
  classifier / OIM tables (unused at inference) may be missing or misshapen.

This lives in ``engine`` because it needs both the Re-ID export format and the person-search model.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from ..reid.stl_init import PERSON_SEARCH_UNINITIALISED, crop_size_mismatch, describe_missing_keys
from ..utils.checkpoint import AtomicCheckpointer

__all__ = ["EMBEDDING_BN_PREFIX", "INFERENCE_UNUSED_PREFIX", "PersonSearchCheckpointer"]

#: The embedding BN (BNNeck) of the identification net: absent from ImageNet conversions, whose
#: rows of Table 2 leave it at its initialisation.
EMBEDDING_BN_PREFIX = "roi_heads.id_head.bnneck."

#: The ID classifier / OIM tables: training state only, unused by inference.
INFERENCE_UNUSED_PREFIX = "roi_heads.id_loss."


class PersonSearchCheckpointer(AtomicCheckpointer):
    """:class:`AtomicCheckpointer` that reports on STL exports it loads and refuses weights that
    do not fit (module docstring).

    Args:
        model, save_dir, checkpointables: as ``DetectionCheckpointer``.
        allow_partial_weights: ``MODEL.ALLOW_PARTIAL_WEIGHTS``: an initialisation may leave any
            weight missing or misshapen (warned about, not an error).
    """

    def __init__(
        self, model, save_dir: str = "", *, allow_partial_weights: bool = False, **checkpointables
    ):
        super().__init__(
            model,
            save_dir,
            init_may_miss=tuple(PERSON_SEARCH_UNINITIALISED),
            load_may_miss=(INFERENCE_UNUSED_PREFIX,),
            allow_partial_weights=allow_partial_weights,
            **checkpointables,
        )

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

    def _may_miss(self, file_keys: set) -> Optional[Tuple[str, ...]]:
        allowed = super()._may_miss(file_keys)
        if self._load_mode == "init" and not any(
            k.startswith(EMBEDDING_BN_PREFIX) for k in file_keys
        ):
            allowed += (EMBEDDING_BN_PREFIX,)  # ImageNet weights: the embedding BN stays as built
        return allowed

    def _fit_hint(self) -> str:
        if self._load_mode == "init":
            return (
                "An initialisation may leave only the RPN, box head and predictor, ID classifier "
                "(and, from ImageNet weights, the embedding BN) uninitialised: check that the "
                "weights were made for this model (MODEL.RESNETS.DEPTH and widths, MODEL.MRFP), "
                "or set MODEL.ALLOW_PARTIAL_WEIGHTS True to train from them anyway."
            )
        if self._load_mode is None:
            return (
                "Use a trained person-search model and the config it was trained with (same "
                "depth, widths, MODEL.MRFP.ENABLED)."
            )
        return super()._fit_hint()

    def _check_crop_size(self, reid_input_size) -> None:
        model = getattr(self.model, "module", self.model)
        id_pooler = getattr(getattr(model, "roi_heads", None), "id_pooler", None)
        if id_pooler is not None:
            warning = crop_size_mismatch(reid_input_size, id_pooler.output_shape)
            if warning:
                self.logger.warning(warning)
