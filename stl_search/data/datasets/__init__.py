"""Data sets: PRW and CUHK-SYSU loaders of the distributed formats, the synthetic PRW-format set,
and their lazy registration in Detectron2's ``DatasetCatalog`` (done on import; nothing is read)."""

from .builtin import (
    data_root,
    num_training_identities,
    register_all_builtin,
    register_cuhk_sysu,
    register_prw,
    register_synthetic,
)
from .common import DatasetFormatError, DatasetKeyError

register_all_builtin()

__all__ = [
    "DatasetFormatError",
    "DatasetKeyError",
    "data_root",
    "num_training_identities",
    "register_cuhk_sysu",
    "register_prw",
    "register_synthetic",
]
