"""Parity of an exported model with the PyTorch one: boxes, embeddings, rankings.

Used by the tests (tiny random model) and, as a command, on a trained checkpoint and a data set::

    python -m stl_search.export.parity --config-file configs/synthetic/person_search.yaml \
        --export-dir output/export/onnx MODEL.WEIGHTS output/.../model_final.pth

runs the gallery split ``DATASETS.TEST[0]`` and the query split ``DATASETS.QUERY[0]`` through
both, pairs each PyTorch detection with the exported detection of highest IoU, and prints the
largest box difference (pixels), the smallest embedding cosine, and for how many queries the top-k
gallery detections (by cosine similarity, as in search) are the same, in the same order.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
from detectron2.structures import Instances, pairwise_iou

from ..data.build import build_person_search_test_loader
from ..engine.model import build_inference_model
from ..engine.setup import load_config
from ..utils.cli import HelpFormatter
from .runtime import ExportedPersonSearch, check_same_settings

__all__ = [
    "GalleryParity",
    "check_same_settings",
    "compare_detections",
    "compare_rankings",
    "run_parity",
    "top_k",
]


@dataclass
class GalleryParity:
    """Running totals over gallery images: PyTorch vs exported detections."""

    reference: int = 0  # PyTorch detections
    exported: int = 0  # exported detections
    unmatched: int = 0  # PyTorch detections with no exported one at IoU >= 0.5
    max_box_diff: float = 0.0  # pixels, over matched pairs
    min_cosine: float = 1.0  # embeddings of matched pairs
    # Per image: for each PyTorch detection, the index of its exported pair (-1: none).
    matches: List[torch.Tensor] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"detections {self.reference} PyTorch / {self.exported} exported, "
            f"{self.unmatched} unmatched; max box difference {self.max_box_diff:.4f} px; "
            f"min embedding cosine {self.min_cosine:.6f}"
        )


def compare_detections(
    reference: Instances, exported: Instances, totals: Optional[GalleryParity] = None
) -> GalleryParity:
    """Pair the detections of one image (IoU >= 0.5, best first) and add them to ``totals``."""
    totals = GalleryParity() if totals is None else totals
    totals.reference += len(reference)
    totals.exported += len(exported)
    match = torch.full((len(reference),), -1, dtype=torch.int64)
    if len(reference) and len(exported):
        iou = pairwise_iou(reference.pred_boxes, exported.pred_boxes)
        best_iou, best = iou.max(dim=1)
        match = torch.where(best_iou >= 0.5, best, match)
        pairs = match >= 0
        ref_boxes = reference.pred_boxes.tensor[pairs]
        exp_boxes = exported.pred_boxes.tensor[match[pairs]]
        if pairs.any():
            totals.max_box_diff = max(
                totals.max_box_diff, float((ref_boxes - exp_boxes).abs().max())
            )
            cosine = (
                reference.pred_embeddings[pairs] * exported.pred_embeddings[match[pairs]]
            ).sum(dim=1)
            totals.min_cosine = min(totals.min_cosine, float(cosine.min()))
    totals.unmatched += int((match < 0).sum())
    totals.matches.append(match)
    return totals


def top_k(query: torch.Tensor, gallery: torch.Tensor, k: int) -> List[int]:
    """Indices of the ``k`` gallery embeddings most similar (cosine) to ``query``, best first."""
    similarity = gallery @ query
    return similarity.argsort(descending=True)[:k].tolist()


def compare_rankings(
    reference_queries: torch.Tensor,
    reference_gallery: torch.Tensor,
    exported_queries: torch.Tensor,
    exported_gallery: torch.Tensor,
    exported_to_reference: torch.Tensor,
    k: int = 5,
) -> int:
    """How many queries get the same top-``k`` gallery detections, in the same order.

    ``exported_to_reference[j]``: the PyTorch detection paired with exported detection ``j``
    (-1 when none), so that both rankings speak of the same detections.
    """
    same = 0
    for q_ref, q_exp in zip(reference_queries, exported_queries):
        ranked = [int(exported_to_reference[j]) for j in top_k(q_exp, exported_gallery, k)]
        same += ranked == top_k(q_ref, reference_gallery, k)
    return same


def _inverse(matches: Sequence[torch.Tensor], exported_counts: Sequence[int]) -> torch.Tensor:
    """Global exported index -> global PyTorch index (-1 when unpaired)."""
    out = []
    ref_offset = 0
    for match, n_exp in zip(matches, exported_counts):
        inverse = torch.full((n_exp,), -1, dtype=torch.int64)
        paired = match >= 0
        inverse[match[paired]] = torch.nonzero(paired).flatten() + ref_offset
        out.append(inverse)
        ref_offset += len(match)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


@torch.no_grad()
def run_parity(model, exported: ExportedPersonSearch, cfg, k: int = 5) -> dict:
    """Parity of ``exported`` with ``model`` on ``DATASETS.TEST[0]`` and ``DATASETS.QUERY[0]``."""
    model.eval()
    totals = GalleryParity()
    ref_gallery, exp_gallery, exp_counts = [], [], []
    for (inputs,) in build_person_search_test_loader(cfg, cfg.DATASETS.TEST[0], "test"):
        ref = model([inputs])[0]["instances"].to("cpu")
        exp = exported([inputs])[0]["instances"]
        compare_detections(ref, exp, totals)
        ref_gallery.append(ref.pred_embeddings)
        exp_gallery.append(exp.pred_embeddings)
        exp_counts.append(len(exp))
    ref_queries, exp_queries = [], []
    for (inputs,) in build_person_search_test_loader(cfg, cfg.DATASETS.QUERY[0], "query"):
        ref_queries.append(model([inputs])[0]["query_embedding"].cpu().reshape(-1))
        exp_queries.append(exported([inputs])[0]["query_embedding"].reshape(-1))
    ref_q, exp_q = torch.stack(ref_queries), torch.stack(exp_queries)
    same = compare_rankings(
        ref_q,
        torch.cat(ref_gallery),
        exp_q,
        torch.cat(exp_gallery),
        _inverse(totals.matches, exp_counts),
        k,
    )
    return {
        "images": len(totals.matches),
        "detections": totals.reference,
        "exported_detections": totals.exported,
        "unmatched": totals.unmatched,
        "max_box_diff_px": totals.max_box_diff,
        "min_embedding_cosine": totals.min_cosine,
        "min_query_cosine": float((ref_q * exp_q).sum(dim=1).min()),
        "queries": len(ref_queries),
        f"same_top{k}": same,
    }


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.export.parity",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="the model's config (YAML)"
    )
    parser.add_argument(
        "--export-dir", required=True, metavar="DIR", help="output folder of stl_search.export"
    )
    parser.add_argument("--topk", type=int, default=5, help="top-k hits compared per query")
    parser.add_argument("--threads", type=int, default=2, help="torch and runtime threads")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    exported = ExportedPersonSearch(args.export_dir, num_threads=args.threads)
    check_same_settings(exported, cfg)
    model = build_inference_model(cfg)
    result = run_parity(model, exported, cfg, args.topk)
    for key, value in result.items():
        print(f"{key}: {value}")
    return result


if __name__ == "__main__":
    main()
