"""stl-search: one-step person search with STL and MRFP, as a Detectron2 extension.

Importing the package registers its components in Detectron2's registries (backbone, meta
architecture, ROI heads) and its data sets in ``DatasetCatalog`` (lazily: nothing is read).
"""

from . import data, modeling  # noqa: F401  (registration side effects)
from .config import add_stl_search_config

__all__ = ["add_stl_search_config"]
