"""Write a person-search model as two TorchScript or ONNX graphs plus ``export.json``.

``export_person_search(model, cfg, out_dir, fmt)`` traces :class:`~.graphs.GalleryGraph` and
:class:`~.graphs.QueryGraph` (Detectron2's tracing method, ``tools/deploy/export_model.py``) on an
example image and writes ``gallery.{ts,onnx}``, ``query.{ts,onnx}`` and ``export.json``: the
graphs' inputs, outputs and sha256, the pre-processing a caller must do (decoding, channel
order, the exact resize: Pillow's bilinear filter and Detectron2's rounding of the target size;
mean / std are applied inside the graphs), what the trace fixed, and the exporting versions.

The folder is written whole or not at all: the files go to a hidden staging folder beside it,
which then replaces it (a killed export leaves the previous export intact, never one model's
gallery graph beside another's query graph); the runtime checks each graph's sha256 at load.

Dynamic: the image height and width, the number of detections and of query boxes. Fixed by the
trace: one image per call, the RPN's top-k and NMS thresholds, the box NMS threshold and
``TEST.DETECTIONS_PER_IMAGE`` (all listed under ``"fixed"`` in ``export.json``).
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import secrets
import shutil
import warnings
from typing import Dict, Optional

import detectron2
import PIL
import torch
import torchvision
from detectron2.config import CfgNode

from ..utils.io import _fsync_directory, atomic_open, atomic_write_json, sha256_of, write_error
from .graphs import GalleryGraph, QueryGraph, check_exportable, prepare_for_export

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "describe",
    "example_image",
    "export_person_search",
    "fixed_settings",
    "resize_spec",
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
        "pillow": PIL.__version__,  # the resize (export.json "preprocessing")
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": detectron2.__version__,
    }
    if fmt == "onnx":
        import onnx  # noqa: PLC0415  (optional dependency: pip install -e .[export])

        versions.update(onnx=onnx.__version__, opset=ONNX_OPSET)
    return versions


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


def resize_spec(cfg: CfgNode) -> Dict[str, object]:
    """The exact resize of the evaluation's mapper (Detectron2's ``ResizeShortestEdge`` at test
    time), as ``export.json`` ``"preprocessing"."resize"`` states it for a runtime without torch.

    The filter matters: Pillow's bilinear widens its support with the downscale factor (it
    antialiases); OpenCV's ``INTER_LINEAR`` samples 2 x 2 pixels whatever the factor, gives other
    pixels on every downscale, and so other detections (docs/deploying.md).
    """
    return {
        "rule": "ResizeShortestEdge: scale so that the shorter side is short_edge, unless the "
        "longer side would exceed max_size (then the longer side is max_size)",
        "short_edge": cfg.INPUT.MIN_SIZE_TEST,
        "max_size": cfg.INPUT.MAX_SIZE_TEST,
        "target_size": "in float: scale = short_edge / min(h, w); new_h, new_w = h * scale, "
        "w * scale; if max(new_h, new_w) > max_size: multiply both by max_size / max(new_h, "
        "new_w); then new_h = int(new_h + 0.5), new_w = int(new_w + 0.5) (Detectron2's "
        "ResizeShortestEdge.get_output_shape); short_edge 0: no resize",
        "library": "Pillow",
        "call": "PIL.Image.fromarray(image).resize((new_w, new_h), PIL.Image.BILINEAR)",
        "filter": "PIL.Image.BILINEAR (antialiased when downscaling; not OpenCV INTER_LINEAR)",
        "input": "H x W x 3 uint8 array in channel_order (decoded as Detectron2's read_image: "
        "Pillow, EXIF orientation applied, converted to RGB, reversed for BGR)",
        "output": "H' x W' x 3 uint8 (Pillow rounds), transposed to 3 x H' x W'",
    }


def describe(
    cfg: CfgNode, fmt: str, embedding_dim: int, graph_sha256: Optional[Dict[str, str]] = None
) -> dict:
    """The ``export.json`` content (docs/interfaces.md, "Export"; docs/deploying.md)."""
    graph_sha256 = graph_sha256 or {}
    return {
        "format": fmt,
        "graphs": {
            name: {"file": name + FORMATS[fmt], "sha256": graph_sha256.get(name), **spec}
            for name, spec in _IO.items()
        },
        "embedding_dim": embedding_dim,
        "preprocessing": {
            "channel_order": cfg.INPUT.FORMAT,
            "layout": "CHW",
            "dtype": "uint8",
            "resize": resize_spec(cfg),
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
            "weights_sha256": sha256_of(cfg.MODEL.WEIGHTS, missing_ok=True),
        },
        "versions": _versions(fmt),
    }


def _export_files() -> set:
    """What an export folder holds; a folder with anything else is not replaced."""
    return {DESCRIPTION_FILE} | {name + ext for name in _IO for ext in FORMATS.values()}


def _check_replaceable(out_dir: str) -> None:
    """Refuse an ``out_dir`` that holds anything but an earlier export (it would be lost)."""
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise FileExistsError(f"--out {out_dir} is a file, not a folder")
    others = sorted(set(os.listdir(out_dir)) - _export_files())
    if others:
        raise FileExistsError(
            f"--out {out_dir} holds other files than an export ({', '.join(others[:5])}): "
            "give a new or empty folder, or an earlier export's"
        )


def _new_folder_beside(out_dir: str, kind: str) -> str:
    """A new hidden folder beside ``out_dir`` (mode: a plain ``mkdir``'s, the umask's).

    Raises:
        OSError: naming ``out_dir`` (``stl_search.utils.io.write_error``), not the hidden folder.
    """
    parent, name = os.path.split(os.path.abspath(out_dir))
    while True:
        path = os.path.join(parent, f".{name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.makedirs(parent, exist_ok=True)
            os.mkdir(path)
            return path
        except FileExistsError as e:
            if e.filename == path:
                continue
            raise write_error(e, out_dir) from None
        except OSError as e:
            raise write_error(e, out_dir, path) from None


def _about(error: OSError, *paths: str) -> bool:
    """Whether ``error`` is one of writing ``paths`` (a file in them, or no file named)."""
    if error.filename is None or hasattr(error, "write_reason"):
        return True
    named = os.path.abspath(str(error.filename))
    return any(
        named == os.path.abspath(p) or named.startswith(os.path.abspath(p) + os.sep) for p in paths
    )


def _replace_folder(staging: str, out_dir: str) -> None:
    """Move the finished ``staging`` folder to ``out_dir``, replacing an earlier export."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.exists(out_dir):
        os.rename(staging, out_dir)
    else:
        old = _new_folder_beside(out_dir, "old")
        os.rename(out_dir, os.path.join(old, "export"))
        os.rename(staging, out_dir)
        shutil.rmtree(old)
    _fsync_directory(parent)


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
    _check_replaceable(out_dir)
    model = prepare_for_export(model, cfg)
    image = example_image(cfg) if image is None else image
    staging = _new_folder_beside(out_dir, "partial")
    try:
        gallery_args = (image, torch.tensor(float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)))
        query_args = (image, _example_query_boxes(image))
        hashes = {}
        for name, graph, args in (
            ("gallery", GalleryGraph(model), gallery_args),
            ("query", QueryGraph(model), query_args),
        ):
            path = os.path.join(staging, name + FORMATS[fmt])
            _write_graph(graph.eval(), args, fmt, name, path)
            hashes[name] = sha256_of(path)
        description = describe(cfg, fmt, model.roi_heads.id_head.embedding_dim, hashes)
        atomic_write_json(description, os.path.join(staging, DESCRIPTION_FILE))
        _replace_folder(staging, out_dir)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno is not None and _about(e, out_dir, staging):
            raise write_error(e, out_dir, staging) from None
        raise
    logger.info(
        "wrote %s (%s)", out_dir, ", ".join(sorted(_export_files() & set(os.listdir(out_dir))))
    )
    return description
