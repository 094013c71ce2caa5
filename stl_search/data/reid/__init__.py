"""Data of STL step 1 (Re-ID pretraining): person crops cut from the scene images, their resumable
P x K / shuffled samplers, BoT augmentations and the train / test loaders.

Modules: ``crops`` (crop records of a registered split, :class:`ReIDCropDataset`), ``samplers``
(:class:`PKSampler`, :class:`ShuffledSampler`, per-sample seeds), ``transforms`` (BoT train /
test transforms) and ``build`` (loaders and the batch format of ``stl_search.reid.model``).
"""

from .build import build_reid_test_loader, build_reid_train_loader, reid_collate
from .crops import ReIDCropDataset, build_reid_records, build_reid_test_records, cut_crop
from .samplers import PKSampler, ShuffledSampler
from .transforms import build_reid_transform

__all__ = [
    "PKSampler",
    "ReIDCropDataset",
    "ShuffledSampler",
    "build_reid_records",
    "build_reid_test_loader",
    "build_reid_test_records",
    "build_reid_train_loader",
    "build_reid_transform",
    "cut_crop",
    "reid_collate",
]
