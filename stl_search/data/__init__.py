"""Data layer: data sets (registered on import), the person-search mapper and loaders, the
resumable (seed, position) training streams, the Re-ID crops, samplers, augmentations and loaders
of STL step 1 (``data.reid``), and data set statistics. See docs/interfaces.md for the formats."""

from . import datasets  # noqa: F401  (registers the built-in data sets, lazily)
from .datasets import (
    num_training_identities,
    register_cuhk_sysu,
    register_person_search_json,
    register_prw,
    register_synthetic,
)

__all__ = [
    "num_training_identities",
    "register_cuhk_sysu",
    "register_person_search_json",
    "register_prw",
    "register_synthetic",
]
