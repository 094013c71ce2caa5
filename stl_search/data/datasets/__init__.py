"""Data sets: PRW, CUHK-SYSU and MovieNet-PS loaders of the distributed formats, the synthetic
PRW-format set, your own data as a person-search JSON file (docs/own-data.md), and their lazy
registration in Detectron2's ``DatasetCatalog`` (built-in sets on import; nothing is read)."""

from .builtin import (
    data_root,
    default_query_split,
    num_training_identities,
    register_all_builtin,
    register_cuhk_sysu,
    register_movienet_ps,
    register_prw,
    register_synthetic,
)
from .common import DatasetFormatError, DatasetKeyError
from .person_search_json import register_person_search_json

register_all_builtin()

__all__ = [
    "DatasetFormatError",
    "DatasetKeyError",
    "data_root",
    "default_query_split",
    "num_training_identities",
    "register_cuhk_sysu",
    "register_movienet_ps",
    "register_person_search_json",
    "register_prw",
    "register_synthetic",
]
