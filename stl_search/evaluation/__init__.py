"""Person-search evaluation: the PRW / CUHK-SYSU protocols (``metrics``, pure NumPy), the
Detectron2 evaluator that feeds them, and the two-loader inference loop."""

from .evaluator import PersonSearchEvaluator
from .inference import inference_on_person_search
from .metrics import (
    CBGMContext,
    DetectionResult,
    GalleryDetections,
    QueryGalleries,
    SearchResult,
    average_precision,
    detection_metrics,
    explicit_galleries,
    prw_galleries,
    query_context_from_gallery,
    search_metrics,
)
from .plots import plot_gallery_size_curve

__all__ = [
    "PersonSearchEvaluator",
    "inference_on_person_search",
    "CBGMContext",
    "DetectionResult",
    "GalleryDetections",
    "QueryGalleries",
    "SearchResult",
    "average_precision",
    "detection_metrics",
    "explicit_galleries",
    "prw_galleries",
    "query_context_from_gallery",
    "search_metrics",
    "plot_gallery_size_curve",
]
