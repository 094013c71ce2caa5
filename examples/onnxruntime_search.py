"""Person search with onnxruntime alone: no torch, no Detectron2, no stl_search import.

    python examples/onnxruntime_search.py --export output/export/onnx \
        --query QUERY.jpg --box X1 Y1 X2 Y2 --gallery FOLDER [--topk 5] [--json hits.json]

Runs an ONNX export folder (``python -m stl_search.export --format onnx``) with numpy, Pillow and
onnxruntime only, doing the pre-processing that its ``export.json`` states
(``"preprocessing"``, docs/deploying.md) exactly as the PyTorch path does it:

1. decode with Pillow, apply the EXIF orientation, convert to RGB (reverse to BGR when
   ``channel_order`` is BGR): Detectron2's ``read_image``;
2. target size: Detectron2's ``ResizeShortestEdge`` rule with its rounding ``int(x + 0.5)``;
3. resize with Pillow's ``BILINEAR`` filter on the uint8 H x W x 3 array (OpenCV's
   ``INTER_LINEAR`` is another filter: it does not antialias when downscaling, and the
   detections move);
4. uint8, transposed to 3 x H x W; mean / std are inside the graphs.

The gallery graph's boxes are in the resized frame: they are scaled back to the image, clipped,
and empty ones dropped (Detectron2's ``detector_postprocess``). The query box goes the other way,
into the resized frame. Every gallery detection is then ranked by cosine similarity (the dot
product of the L2-normalised embeddings) to the query person.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np
import onnxruntime
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSE = {
    2: Image.FLIP_LEFT_RIGHT,
    3: Image.ROTATE_180,
    4: Image.FLIP_TOP_BOTTOM,
    5: Image.TRANSPOSE,
    6: Image.ROTATE_270,
    7: Image.TRANSVERSE,
    8: Image.ROTATE_90,
}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ExportedModel:
    """The two graphs of an ONNX export folder, checked against their ``export.json`` sha256."""

    def __init__(self, export_dir: str, num_threads: int = 0):
        with open(os.path.join(export_dir, "export.json"), encoding="utf-8") as f:
            self.description = json.load(f)
        if self.description["format"] != "onnx":
            raise ValueError(
                f"{export_dir}: an ONNX export is needed, this one is {self.description['format']}"
            )
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.sessions = {}
        for name in ("gallery", "query"):
            graph = self.description["graphs"][name]
            path = os.path.join(export_dir, graph["file"])
            if _sha256(path) != graph["sha256"]:
                raise ValueError(f"{path} does not match the sha256 in export.json")
            self.sessions[name] = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
        self.pre = self.description["preprocessing"]

    # ------------------------------------------------------------ pre-processing
    def read_image(self, path: str) -> np.ndarray:
        """H x W x 3 uint8 in the model's channel order (Detectron2's ``read_image``)."""
        with Image.open(path) as image:
            try:
                orientation = image.getexif().get(_EXIF_ORIENTATION)
            except Exception:  # noqa: BLE001  (a broken EXIF block: no orientation, as Detectron2)
                orientation = None
            if orientation in _EXIF_TRANSPOSE:
                image = image.transpose(_EXIF_TRANSPOSE[orientation])
            pixels = np.asarray(image.convert("RGB"))
        order = self.pre["channel_order"]
        if order not in ("RGB", "BGR"):
            raise ValueError(f"channel order {order!r} is not RGB or BGR")
        return np.ascontiguousarray(pixels[:, :, ::-1]) if order == "BGR" else pixels

    def target_size(self, height: int, width: int) -> Tuple[int, int]:
        """``(new_h, new_w)``: Detectron2's ``ResizeShortestEdge.get_output_shape``."""
        short, max_size = self.pre["resize"]["short_edge"], self.pre["resize"]["max_size"]
        if short == 0:
            return height, width
        scale = short * 1.0 / min(height, width)
        new_h, new_w = (short * 1.0, scale * width) if height < width else (scale * height, short)
        if max(new_h, new_w) > max_size:
            scale = max_size * 1.0 / max(new_h, new_w)
            new_h, new_w = new_h * scale, new_w * scale
        return int(new_h + 0.5), int(new_w + 0.5)

    def model_input(self, image: np.ndarray) -> np.ndarray:
        """The graphs' ``image``: Pillow-bilinear resized, uint8, 3 x H' x W'."""
        new_h, new_w = self.target_size(*image.shape[:2])
        if (new_h, new_w) != image.shape[:2]:
            image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    # ------------------------------------------------------------ graphs
    def detect(self, image: np.ndarray, score_thresh: float = None):
        """``(boxes (N, 4) in the image's pixels, scores (N,), embeddings (N, D))``."""
        x = self.model_input(image)
        thresh = self.description["score_thresh"] if score_thresh is None else score_thresh
        boxes, scores, embeddings = self.sessions["gallery"].run(
            None, {"image": x, "score_thresh": np.asarray(thresh, dtype=np.float32)}
        )
        height, width = image.shape[:2]
        boxes = boxes * np.array(
            [width / x.shape[2], height / x.shape[1]] * 2, dtype=np.float32
        )  # detector_postprocess: scale, clip, drop empty boxes
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[keep], scores[keep], embeddings[keep]

    def embed(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Embeddings ``(K, D)`` of the boxes ``(K, 4)`` (XYXY, the image's pixels)."""
        x = self.model_input(image)
        height, width = image.shape[:2]
        scale = np.array([x.shape[2] / width, x.shape[1] / height] * 2)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, x.shape[2])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, x.shape[1])
        (embeddings,) = self.sessions["query"].run(
            None, {"image": x, "boxes": boxes.astype(np.float32)}
        )
        return embeddings


def search(
    model: ExportedModel, query: str, box: Sequence[float], gallery: Sequence[str]
) -> List[Dict]:
    """Every gallery detection, best first: file, box, detection score, similarity."""
    query_embedding = model.embed(model.read_image(query), np.asarray(box))[0]
    hits = []
    for path in gallery:
        boxes, scores, embeddings = model.detect(model.read_image(path))
        for b, s, e in zip(boxes, scores, embeddings):
            hits.append(
                {
                    "file_name": path,
                    "box": [round(float(v), 2) for v in b],
                    "detection_score": float(s),
                    "similarity": float(e @ query_embedding),
                }
            )
    return sorted(hits, key=lambda h: -h["similarity"])


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, each option's default shown (no stl_search import here)."""


def main(argv: Sequence[str] = None) -> List[Dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--export", required=True, metavar="DIR", help="an ONNX export folder")
    parser.add_argument("--query", required=True, help="image holding the query person")
    parser.add_argument(
        "--box",
        required=True,
        nargs=4,
        type=float,
        metavar=("X1", "Y1", "X2", "Y2"),
        help="the query person's box in --query, in pixels",
    )
    parser.add_argument("--gallery", required=True, help="folder of scene images")
    parser.add_argument("--topk", type=int, default=5, help="hits printed")
    parser.add_argument("--threads", type=int, default=0, help="0: onnxruntime's choice")
    parser.add_argument("--json", metavar="FILE", help="write every hit here")
    args = parser.parse_args(argv)
    model = ExportedModel(args.export, args.threads)
    gallery = sorted(
        os.path.join(args.gallery, f)
        for f in os.listdir(args.gallery)
        if f.lower().endswith(IMAGE_EXTENSIONS)
    )
    hits = search(model, args.query, args.box, gallery)
    for rank, hit in enumerate(hits[: args.topk], 1):
        print(
            f"{rank:>4}  {hit['similarity']:.4f}  {hit['detection_score']:.3f}  "
            f"{' '.join(f'{v:.0f}' for v in hit['box'])}  {hit['file_name']}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"query": {"image": args.query, "box": args.box}, "hits": hits}, f, indent=1)
    return hits


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
