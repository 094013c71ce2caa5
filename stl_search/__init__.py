"""stl-search: one-step person search with STL and MRFP, as a Detectron2 extension.

Importing the package registers its components in Detectron2's registries (backbone, meta
architecture, ROI heads) and its data sets in ``DatasetCatalog`` (lazily: nothing is read).
The names below are what a Detectron2 project of its own needs to train and evaluate the model
with Detectron2's ``DefaultTrainer`` (``examples/detectron2_default_trainer.py``).
"""

from . import library_warnings  # noqa: F401  (first: filters before Detectron2 is imported)

# isort: split
from . import data, modeling  # noqa: F401  (registration side effects)
from .config import add_stl_search_config
from .data.build import build_person_search_eval_loader
from .data.datasets import num_training_identities
from .data.mapper import PersonSearchDatasetMapper
from .evaluation import PersonSearchEvaluator
from .utils.checkpoint import AtomicCheckpointer

__all__ = [
    "AtomicCheckpointer",
    "PersonSearchDatasetMapper",
    "PersonSearchEvaluator",
    "add_stl_search_config",
    "build_person_search_eval_loader",
    "num_training_identities",
]
