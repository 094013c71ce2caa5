"""Person-search evaluation: the PRW / CUHK-SYSU protocols as pure NumPy (``detection``,
``galleries``, ``search``), the Detectron2 evaluator that feeds them (``evaluator``, with
``protocol_inputs`` and ``report``), and the two-loader inference (``inference``).
The protocol is described in ``../../docs/protocol.md``."""

from .detection import DetectionResult, average_precision, detection_metrics, matched_box_iou
from .evaluator import PersonSearchEvaluator
from .galleries import (
    CBGMContext,
    GalleryDetections,
    QueryGalleries,
    explicit_galleries,
    prw_galleries,
    query_context_from_gallery,
)
from .inference import inference_on_person_search
from .report import plot_gallery_size_curve
from .search_metrics import SearchResult, reid_iou_threshold, search_metrics

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
    "matched_box_iou",
    "prw_galleries",
    "query_context_from_gallery",
    "reid_iou_threshold",
    "search_metrics",
    "plot_gallery_size_curve",
]
