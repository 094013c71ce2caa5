"""``ExportedPersonSearch``: run an exported person-search model like the PyTorch one.

Loads a folder written by ``python -m stl_search.export`` (``export.json`` says the format) and
runs its graphs with onnxruntime (ONNX) or ``torch.jit.load`` (TorchScript), with the
``PersonSearchRCNN`` inference contract (docs/interfaces.md): mapper dicts in (``image``
resized, ``height``, ``width``; ``query_boxes`` for queries), the same
``[{"instances": Instances(...)}]`` / ``[{"query_embedding": ...}]`` out. So it stands in for the
model wherever the model is called: evaluation, the parity checks, and the predictor,
``PersonSearchPredictor(cfg, model=ExportedPersonSearch(folder))`` (its ``detect`` /
``embed_query``; ``--export DIR`` of the search and index commands). It declares itself prepared
(``inference_prepared``): the predictor's ``TEST.FAST_PATH`` preparation, which folds and
converts a torch model, leaves it alone and only calls :meth:`ExportedPersonSearch.check_config`:
the config must resize, order channels and threshold as ``export.json`` says (the predictor's
mapper does that pre-processing).

Each graph file's sha256 is recorded in ``export.json`` and checked at load: a folder whose
graphs are not the ones its ``export.json`` describes (a partial overwrite, a file copied in
from another export) is refused, naming the file.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torchvision::nms / roi_align for TorchScript graphs)
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..utils.io import sha256_of
from .exporter import DESCRIPTION_FILE, FORMATS, fixed_settings

__all__ = ["ExportedPersonSearch", "check_same_settings"]


class _OnnxGraph:
    def __init__(self, path: str, num_threads: Optional[int], providers: Sequence[str]):
        import onnxruntime  # noqa: PLC0415  (optional dependency: pip install -e .[export])

        available = onnxruntime.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(
                f"onnxruntime {onnxruntime.__version__} has no {', '.join(missing)} "
                f"(available: {', '.join(available)}); the CUDA and TensorRT providers come "
                "with the onnxruntime-gpu package"
            )
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=list(providers))
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: np.ndarray) -> List[np.ndarray]:
        return self.session.run(None, dict(zip(self.input_names, inputs)))


class _TorchScriptGraph:
    def __init__(self, path: str):
        self.module = torch.jit.load(path, map_location="cpu").eval()

    def __call__(self, *inputs: np.ndarray) -> List[np.ndarray]:
        with torch.no_grad():
            out = self.module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.numpy() for o in out]


class ExportedPersonSearch:
    """An exported gallery + query graph pair; see the module docstring.

    Args:
        export_dir: the folder holding ``export.json`` and the two graphs.
        num_threads: onnxruntime's intra-op threads (default: onnxruntime's choice). TorchScript
            graphs use torch's global setting (``torch.set_num_threads``).
        score_thresh: detections scoring below are dropped; default: the exported model's
            ``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` (``export.json`` ``"score_thresh"``).
        providers: onnxruntime's execution providers, in order of preference (e.g.
            ``["CUDAExecutionProvider", "CPUExecutionProvider"]``); default: the CPU's. One that
            this onnxruntime lacks raises a ``ValueError`` naming it. Inputs and outputs stay
            NumPy arrays in host memory whatever the provider.
    """

    #: Nothing to fold or convert: ``prepare_inference_model`` takes it as it is.
    inference_prepared = True

    def __init__(
        self,
        export_dir: str,
        num_threads: Optional[int] = None,
        score_thresh: Optional[float] = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ):
        path = os.path.join(export_dir, DESCRIPTION_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: {export_dir} is not a folder written by stl_search.export"
            )
        with open(path, encoding="utf-8") as f:
            self.description = json.load(f)
        fmt = self.description.get("format")
        if fmt not in FORMATS:
            raise ValueError(f"{path}: 'format' must be one of {sorted(FORMATS)}, got {fmt!r}")
        self.format = fmt
        self.export_dir = export_dir
        graphs = {}
        for name in ("gallery", "query"):
            file = _checked_graph_file(export_dir, self.description, name)
            graphs[name] = (
                _OnnxGraph(file, num_threads, providers)
                if fmt == "onnx"
                else _TorchScriptGraph(file)
            )
        self._gallery, self._query = graphs["gallery"], graphs["query"]
        self.score_thresh = (
            self.description["score_thresh"] if score_thresh is None else float(score_thresh)
        )

    @property
    def weights_sha256(self) -> Optional[str]:
        """The sha256 of the weights file it was exported from (None: exported from a model in
        memory)."""
        return self.description.get("model", {}).get("weights_sha256")

    def made_from(self, weights_file: str) -> bool:
        """Whether this export was made from ``weights_file`` (its sha256 in ``export.json``)."""
        return self.weights_sha256 is not None and self.weights_sha256 == sha256_of(
            weights_file, missing_ok=True
        )

    def check_config(self, cfg) -> None:
        """Raise ``ValueError`` naming each setting where ``cfg`` differs from the export: the
        pre-processing a caller does (``INPUT.FORMAT``, ``INPUT.MIN_SIZE_TEST``,
        ``INPUT.MAX_SIZE_TEST``), the settings the trace fixed, the score threshold."""
        check_same_settings(self, cfg)

    def eval(self) -> "ExportedPersonSearch":
        """Nothing to switch (the graphs are inference-only); lets it stand in for the model."""
        return self

    # ------------------------------------------------------------ model contract
    def __call__(self, batched_inputs: Sequence[Dict]) -> List[Dict]:
        """``PersonSearchRCNN.inference`` on mapper dicts: gallery and query outputs, in order."""
        return [
            self._query_output(x) if "query_boxes" in x else self._gallery_output(x)
            for x in batched_inputs
        ]

    def _gallery_output(self, x: Dict) -> Dict[str, Instances]:
        image = _as_uint8_chw(x["image"])
        instances = self._detect_input_frame(image)
        height, width = x.get("height", image.shape[1]), x.get("width", image.shape[2])
        return {"instances": detector_postprocess(instances, height, width)}

    def _query_output(self, x: Dict) -> Dict[str, torch.Tensor]:
        boxes = x["query_boxes"]
        boxes = boxes.tensor if isinstance(boxes, Boxes) else torch.as_tensor(boxes)
        emb = self._embed_input_frame(_as_uint8_chw(x["image"]), boxes.reshape(-1, 4))
        return {"query_embedding": emb[0] if emb.shape[0] == 1 else emb}

    def _detect_input_frame(self, image: np.ndarray) -> Instances:
        thresh = np.asarray(self.score_thresh, dtype=np.float32)
        boxes, scores, embeddings = self._gallery(image, thresh)
        instances = Instances(tuple(image.shape[1:]))
        instances.pred_boxes = Boxes(torch.from_numpy(boxes))
        instances.scores = torch.from_numpy(scores)
        instances.pred_classes = torch.zeros(len(scores), dtype=torch.int64)
        instances.pred_embeddings = torch.from_numpy(embeddings)
        return instances

    def _embed_input_frame(self, image: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
        if boxes.shape[0] == 0:
            raise ValueError("embed_query needs at least one box")
        (embeddings,) = self._query(image, boxes.to(torch.float32).numpy())
        return torch.from_numpy(embeddings)


def _checked_graph_file(export_dir: str, description: Dict, name: str) -> str:
    """The path of graph ``name``, after checking its sha256 against ``export.json``."""
    graph = description["graphs"][name]
    path = os.path.join(export_dir, graph["file"])
    recorded = graph.get("sha256")
    if recorded is None:
        raise ValueError(
            f"{os.path.join(export_dir, DESCRIPTION_FILE)}: graphs.{name} records no sha256 "
            "(written before graph hashes were recorded): export the model again"
        )
    actual = sha256_of(path, missing_ok=True)
    if actual != recorded:
        raise ValueError(
            f"{path} is not the {name} graph that {DESCRIPTION_FILE} describes (sha256 "
            f"{(actual or 'missing file')[:16]}, recorded {recorded[:16]}): the folder was "
            "partly overwritten or mixed with another export; export the model again"
        )
    return path


def check_same_settings(exported: ExportedPersonSearch, cfg) -> None:
    """Raise ``ValueError`` naming each setting of ``cfg`` that differs from ``exported``'s:
    pre-processing (channel order, resize sizes), the settings fixed by the trace, and the score
    threshold (the runtime's, which may override the exported model's)."""
    pre = exported.description["preprocessing"]
    fixed = dict(
        exported.description["fixed"],
        score_thresh=exported.score_thresh,
        input_format=pre["channel_order"],
        min_size_test=pre["resize"]["short_edge"],
        max_size_test=pre["resize"]["max_size"],
    )
    wanted = dict(
        fixed_settings(cfg),
        score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        input_format=cfg.INPUT.FORMAT,
        min_size_test=cfg.INPUT.MIN_SIZE_TEST,
        max_size_test=cfg.INPUT.MAX_SIZE_TEST,
    )
    differ = [
        f"{k}: export {fixed.get(k)!r}, config {v!r}"
        for k, v in wanted.items()
        if fixed.get(k) != v
    ]
    if differ:
        raise ValueError(
            f"the export {exported.export_dir} was made with other settings than this config "
            "(use the exported model's config, or export again with the same overrides): "
            + "; ".join(differ)
        )


def _as_uint8_chw(image) -> np.ndarray:
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a 3 x H x W image, got shape {array.shape}")
    return np.ascontiguousarray(array.astype(np.uint8, copy=False))
