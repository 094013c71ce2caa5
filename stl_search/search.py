"""Search a folder of scene images for the person in a query box.

    python -m stl_search.search --config-file configs/synthetic/person_search.yaml \
        --query QUERY.jpg --box x1 y1 x2 y2 --gallery FOLDER --out result.png [--topk 5] \
        MODEL.WEIGHTS output/person_search/model_final.pth MODEL.DEVICE cpu

Detects persons in every gallery image, ranks them by cosine similarity to the query person
(the query box goes through the model's identification path, as in evaluation), prints the top-k
with scores and saves the query beside its top hits with their boxes drawn.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import List, Sequence

import cv2
import numpy as np
import torch

from .data.mapper import PersonSearchDatasetMapper
from .engine.model import build_inference_model
from .engine.setup import load_config
from .utils.io import atomic_open

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class Hit:
    """One detected person in a gallery image and its similarity to the query."""

    file_name: str
    box: np.ndarray  # x1, y1, x2, y2 in the image's own pixels
    detection_score: float
    similarity: float


def _image_record(path: str) -> dict:
    image = cv2.imread(path)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    height, width = image.shape[:2]
    return {"file_name": path, "image_id": os.path.basename(path), "height": height, "width": width}


def list_gallery(folder: str) -> List[str]:
    """Image files of ``folder`` (sorted); raises if there are none."""
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"--gallery {folder} is not a folder")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f"--gallery {folder} holds no {'/'.join(IMAGE_EXTENSIONS)} images")
    return [os.path.join(folder, f) for f in files]


@torch.no_grad()
def search(
    model: torch.nn.Module,
    cfg,
    query_image: str,
    query_box: Sequence[float],
    gallery_files: Sequence[str],
) -> List[Hit]:
    """All detections of ``gallery_files`` ranked by similarity to the query person."""
    model.eval()
    x1, y1, x2, y2 = (float(v) for v in query_box)
    query = _image_record(query_image)
    if not (0 <= x1 < x2 <= query["width"] and 0 <= y1 < y2 <= query["height"]):
        raise ValueError(
            f"--box {query_box} is not a box inside {query_image} "
            f"({query['width']}x{query['height']})"
        )
    query.update(query_box=[x1, y1, x2, y2], identity=-1, query_index=0)
    query_input = PersonSearchDatasetMapper(cfg, mode="query")(query)
    query_embedding = model([query_input])[0]["query_embedding"].cpu().numpy()

    test_mapper = PersonSearchDatasetMapper(cfg, mode="test")
    hits: List[Hit] = []
    for path in gallery_files:
        instances = model([test_mapper(_image_record(path))])[0]["instances"].to("cpu")
        similarities = instances.pred_embeddings.numpy() @ query_embedding
        for box, score, sim in zip(
            instances.pred_boxes.tensor.numpy(), instances.scores.numpy(), similarities
        ):
            hits.append(Hit(path, box, float(score), float(sim)))
    hits.sort(key=lambda h: -h.similarity)
    return hits


def _crop_with_box(
    image: np.ndarray, box: Sequence[float], color, height: int, label: str
) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    canvas = image.copy()
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
    scale = height / canvas.shape[0]
    canvas = cv2.resize(canvas, (max(1, int(canvas.shape[1] * scale)), height))
    cv2.putText(canvas, label, (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return canvas


def render(
    query_image: str,
    query_box: Sequence[float],
    hits: Sequence[Hit],
    out_path: str,
    height: int = 240,
) -> None:
    """Save the query image (box in green) beside each hit's image (box in red), left to right."""
    panels = [_crop_with_box(cv2.imread(query_image), query_box, (0, 255, 0), height, "query")]
    for rank, hit in enumerate(hits, 1):
        panels.append(
            _crop_with_box(
                cv2.imread(hit.file_name),
                hit.box,
                (0, 0, 255),
                height,
                f"#{rank} {hit.similarity:.2f}",
            )
        )
    ok, encoded = cv2.imencode(
        os.path.splitext(out_path)[1] or ".png", np.concatenate(panels, axis=1)
    )
    if not ok:
        raise ValueError(f"cannot encode an image for {out_path}")
    with atomic_open(out_path, "wb") as f:
        f.write(encoded.tobytes())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--query", required=True, help="image holding the query person")
    parser.add_argument(
        "--box", required=True, nargs=4, type=float, metavar=("X1", "Y1", "X2", "Y2")
    )
    parser.add_argument("--gallery", required=True, help="folder of scene images to search")
    parser.add_argument(
        "--out", default="search_result.png", help="picture of the query and its top hits"
    )
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(argv: Sequence[str] = None) -> List[Hit]:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    model = build_inference_model(cfg)  # needs no training set
    hits = search(model, cfg, args.query, args.box, list_gallery(args.gallery))
    top = hits[: args.topk]
    print(f"{'rank':>4}  {'similarity':>10}  {'det score':>9}  box (x1 y1 x2 y2)  image")
    for rank, hit in enumerate(top, 1):
        box = " ".join(f"{v:.0f}" for v in hit.box)
        score = f"{hit.similarity:>10.4f}  {hit.detection_score:>9.3f}"
        print(f"{rank:>4}  {score}  {box:<17}  {hit.file_name}")
    render(args.query, args.box, top, args.out)
    print(f"saved {args.out}")
    return hits


if __name__ == "__main__":
    main()
