"""``ExportedPersonSearch``: run an exported person-search model like the PyTorch one.

Loads a folder written by ``python -m stl_search.export`` (``export.json`` says the format) and
runs its graphs with onnxruntime (ONNX) or ``torch.jit.load`` (TorchScript), with the
``PersonSearchRCNN`` inference contract (docs/interfaces.md): mapper dicts in (``image``
resized, ``height``, ``width``; ``query_boxes`` for queries), the same
``[{"instances": Instances(...)}]`` / ``[{"query_embedding": ...}]`` out. So it stands in for the
model wherever the model is called: evaluation, the parity checks, and the predictor,
``PersonSearchPredictor(cfg, model=ExportedPersonSearch(folder))`` (its ``detect`` /
``embed_query``: a ``--backend onnx``). The config must be the exported model's (the predictor's
mapper resizes and orders channels as ``export.json`` says).
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

from .exporter import DESCRIPTION_FILE, FORMATS, file_sha256

__all__ = ["ExportedPersonSearch"]


class _OnnxGraph:
    def __init__(self, path: str, num_threads: Optional[int]):
        import onnxruntime  # noqa: PLC0415  (optional dependency: pip install -e .[export])

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
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
    """

    def __init__(
        self,
        export_dir: str,
        num_threads: Optional[int] = None,
        score_thresh: Optional[float] = None,
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
        graphs = {}
        for name in ("gallery", "query"):
            file = os.path.join(export_dir, self.description["graphs"][name]["file"])
            graphs[name] = (
                _OnnxGraph(file, num_threads) if fmt == "onnx" else _TorchScriptGraph(file)
            )
        self._gallery, self._query = graphs["gallery"], graphs["query"]
        self.score_thresh = (
            self.description["score_thresh"] if score_thresh is None else float(score_thresh)
        )

    def made_from(self, weights_file: str) -> bool:
        """Whether this export was made from ``weights_file`` (its sha256 in ``export.json``)."""
        recorded = self.description.get("model", {}).get("weights_sha256")
        return recorded is not None and recorded == file_sha256(weights_file)

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


def _as_uint8_chw(image) -> np.ndarray:
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a 3 x H x W image, got shape {array.shape}")
    return np.ascontiguousarray(array.astype(np.uint8, copy=False))
