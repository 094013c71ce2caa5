"""Deployment: the person-search model as two TorchScript or ONNX graphs, and a runtime for them.

    python -m stl_search.export --config-file CONFIG --format onnx|torchscript --out DIR \
        MODEL.WEIGHTS model_final.pth

writes ``gallery.<ext>`` (image -> boxes, scores, L2-normalised embeddings), ``query.<ext>``
(image + boxes -> embeddings) and ``export.json`` (inputs, outputs, pre-processing, what is
fixed, versions); :class:`ExportedPersonSearch` runs them (onnxruntime / ``torch.jit.load``) with
the PyTorch model's inputs and outputs. ONNX needs ``pip install -e .[export]``.
See docs/interfaces.md ("Export") and docs/deploying.md.
"""

from .exporter import FORMATS, export_person_search
from .graphs import ExportNotSupportedError, GalleryGraph, QueryGraph, check_exportable
from .runtime import ExportedPersonSearch

__all__ = [
    "FORMATS",
    "ExportNotSupportedError",
    "ExportedPersonSearch",
    "GalleryGraph",
    "QueryGraph",
    "check_exportable",
    "export_person_search",
]
