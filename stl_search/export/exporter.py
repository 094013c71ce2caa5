"""Write a person-search model as two TorchScript or ONNX graphs plus ``export.json``.

``export_person_search(model, cfg, out_dir, fmt)`` traces :class:`~.graphs.GalleryGraph` and
:class:`~.graphs.QueryGraph` (Detectron2's tracing method, ``tools/deploy/export_model.py``) on an
example image and writes ``gallery.{ts,onnx}``, ``query.{ts,onnx}`` and ``export.json``: the
graphs' inputs and outputs, the pre-processing a caller must do (channel order, resize rule;
mean / std are applied inside the graphs), what the trace fixed, and the exporting versions.

Dynamic: the image height and width, the number of detections and of query boxes. Fixed by the
trace: one image per call, the RPN's top-k and NMS thresholds, the box NMS threshold and
``TEST.DETECTIONS_PER_IMAGE`` (all listed under ``"fixed"`` in ``export.json``).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import os
import warnings
from typing import Dict, Optional

import detectron2
import torch
import torchvision
from detectron2.config import CfgNode

from ..utils.io import atomic_open, atomic_write_json
from .graphs import GalleryGraph, QueryGraph, check_exportable, prepare_for_export

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "describe",
    "example_image",
    "export_person_search",
    "file_sha256",
    "fixed_settings",
]

logger = logging.getLogger(__name__)

FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}
#: RoI Align with ``aligned=True`` needs opset 16 (torchvision's symbolic); 17 is widely run.
ONNX_OPSET = 17
DESCRIPTION_FILE = "export.json"

_IO = {
    "gallery": {
        "inputs": [
            {"name": "image", "dtype": "uint8", "shape": [3, "height", "width"]},
            {"name": "score_thresh", "dtype": "float32", "shape": []},
        ],
        "outputs": [
            {"name": "boxes", "dtype": "float32", "shape": ["detections", 4]},
            {"name": "scores", "dtype": "float32", "shape": ["detections"]},
            {"name": "embeddings", "dtype": "float32", "shape": ["detections", "dim"]},
        ],
    },
    "query": {
        "inputs": [
            {"name": "image", "dtype": "uint8", "shape": [3, "height", "width"]},
            {"name": "boxes", "dtype": "float32", "shape": ["queries", 4]},
        ],
        "outputs": [{"name": "embeddings", "dtype": "float32", "shape": ["queries", "dim"]}],
    },
}


def example_image(cfg: CfgNode, seed: int = 0) -> torch.Tensor:
    """A random uint8 image of the size the resize rule gives a 3:2 landscape frame."""
    short = cfg.INPUT.MIN_SIZE_TEST
    long_side = min(int(short * 1.5), cfg.INPUT.MAX_SIZE_TEST or int(short * 1.5))
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, short, long_side), dtype=torch.uint8, generator=g)


def _example_query_boxes(image: torch.Tensor) -> torch.Tensor:
    h, w = image.shape[1:]
    return torch.tensor(
        [[0.1 * w, 0.1 * h, 0.3 * w, 0.7 * h], [0.5 * w, 0.2 * h, 0.7 * w, 0.9 * h]],
        dtype=torch.float32,
    )


def _write_graph(graph: torch.nn.Module, args: tuple, fmt: str, name: str, path: str) -> None:
    spec = _IO[name]
    with torch.no_grad(), warnings.catch_warnings():
        # Expected: shape checks and asserts become constants; the one data-dependent branch that
        # matters, the identification nets' "no RoI" shortcut, is never taken (graphs.py).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        # IBN's InstanceNorm keeps no running statistics: "train" mode is its eval behaviour.
        warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True")
        # The graphs index with nonzero / top-k results, never with negative indices.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        if fmt == "torchscript":
            traced = torch.jit.trace(graph, args, check_trace=False)
            with atomic_open(path, "wb") as f:
                torch.jit.save(traced, f)
            return
        buffer = io.BytesIO()
        dynamic = {
            t["name"]: {i: d for i, d in enumerate(t["shape"]) if isinstance(d, str)}
            for t in spec["inputs"] + spec["outputs"]
        }
        torch.onnx.export(
            graph,
            args,
            buffer,
            input_names=[t["name"] for t in spec["inputs"]],
            output_names=[t["name"] for t in spec["outputs"]],
            dynamic_axes={k: v for k, v in dynamic.items() if v},
            opset_version=ONNX_OPSET,
            **_legacy_onnx_exporter(),
        )
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())


def _legacy_onnx_exporter() -> dict:
    """The TorchScript-based ONNX exporter (``dynamo=False``): it turns torchvision's NMS and
    RoI Align into ONNX ops; torch >= 2.9 defaults to the ``torch.export`` one."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def _versions(fmt: str) -> Dict[str, object]:
    versions: Dict[str, object] = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": detectron2.__version__,
    }
    if fmt == "onnx":
        import onnx  # noqa: PLC0415  (optional dependency: pip install -e .[export])

        versions.update(onnx=onnx.__version__, opset=ONNX_OPSET)
    return versions


def file_sha256(path: str) -> Optional[str]:
    """Of the weights file, so that a runtime can tell whether an export matches a checkpoint."""
    if not path or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fixed_settings(cfg: CfgNode) -> Dict[str, object]:
    """The settings a trace turns into constants (``export.json`` ``"fixed"``)."""
    rpn = cfg.MODEL.RPN
    return {
        "images_per_call": 1,
        "box_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
        "detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        "rpn_pre_nms_topk": rpn.PRE_NMS_TOPK_TEST,
        "rpn_post_nms_topk": rpn.POST_NMS_TOPK_TEST,
        "rpn_nms_thresh": rpn.NMS_THRESH,
    }


def describe(cfg: CfgNode, fmt: str, embedding_dim: int) -> dict:
    """The ``export.json`` content (docs/interfaces.md, "Export")."""
    return {
        "format": fmt,
        "graphs": {name: {"file": name + FORMATS[fmt], **spec} for name, spec in _IO.items()},
        "embedding_dim": embedding_dim,
        "preprocessing": {
            "channel_order": cfg.INPUT.FORMAT,
            "layout": "CHW",
            "dtype": "uint8",
            "resize": {
                "rule": "ResizeShortestEdge: scale so that the shorter side is short_edge, "
                "unless the longer side would exceed max_size (then the longer side is max_size); "
                "bilinear",
                "short_edge": cfg.INPUT.MIN_SIZE_TEST,
                "max_size": cfg.INPUT.MAX_SIZE_TEST,
            },
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "normalisation": "inside the graphs: (image - pixel_mean) / pixel_std",
        },
        "postprocessing": "boxes are in the resized input frame: scale x by width / input "
        "width and y by height / input height, clip, drop empty boxes (Detectron2's "
        "detector_postprocess); query boxes go in in the input frame too",
        "score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        "fixed": fixed_settings(cfg),
        "model": {
            "mrfp": bool(cfg.MODEL.MRFP.ENABLED),
            "weights": cfg.MODEL.WEIGHTS,
            "weights_sha256": file_sha256(cfg.MODEL.WEIGHTS),
        },
        "versions": _versions(fmt),
    }


def export_person_search(
    model: torch.nn.Module,
    cfg: CfgNode,
    out_dir: str,
    fmt: str,
    image: Optional[torch.Tensor] = None,
) -> dict:
    """Trace ``model`` (a ``PersonSearchRCNN`` built from ``cfg``) into ``out_dir``.

    Args:
        model: the PyTorch model (left untouched: a CPU copy is traced).
        cfg: its config (for the supported-settings check and ``export.json``).
        out_dir: folder for ``gallery.<ext>``, ``query.<ext>`` and ``export.json``.
        fmt: ``"torchscript"`` or ``"onnx"``.
        image: the example (uint8, 3 x H x W, input frame); by default :func:`example_image`.
            Any content works.

    Returns:
        the ``export.json`` dict.

    Raises:
        ExportNotSupportedError: naming the unsupported setting(s) of ``cfg`` / ``model``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {sorted(FORMATS)}, got {fmt!r}")
    check_exportable(cfg)
    model = prepare_for_export(model, cfg)
    image = example_image(cfg) if image is None else image
    os.makedirs(out_dir, exist_ok=True)
    gallery_args = (image, torch.tensor(float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)))
    query_args = (image, _example_query_boxes(image))
    for name, graph, args in (
        ("gallery", GalleryGraph(model), gallery_args),
        ("query", QueryGraph(model), query_args),
    ):
        path = os.path.join(out_dir, name + FORMATS[fmt])
        _write_graph(graph.eval(), args, fmt, name, path)
        logger.info("wrote %s", path)
    description = describe(cfg, fmt, model.roi_heads.id_head.embedding_dim)
    atomic_write_json(description, os.path.join(out_dir, DESCRIPTION_FILE))
    return description
