"""The evaluator's written report: a JSON file with the metrics and the per-query outcomes, the
retrieval grid (queries beside their top-k hits, :mod:`.retrieval_grid`) and for CUHK-SYSU the
gallery-size curve (paper, Fig. "gallery size") as PNGs.

Writes are atomic (``stl_search.utils.io``). The figure uses Matplotlib's object API with the Agg
canvas, so it never touches the global backend of the process (training may run with another one)
and works headless.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from stl_search.utils.io import atomic_open, atomic_write_json

from .detection import DetectionResult
from .galleries import GalleryDetections
from .retrieval_grid import draw_retrieval_grid
from .search_metrics import SearchResult


def write_report(
    output_dir: str,
    *,
    gallery_name: str,
    query_names: Sequence[str],
    protocol: str,
    headline: str,
    settings: Mapping,
    results: Mapping,
    labels: Sequence[str],
    searches: Sequence[SearchResult],
    detection: Mapping[str, DetectionResult],
    query_dicts: Sequence[dict],
    gallery_dicts: Sequence[dict],
    gallery: GalleryDetections,
    retrieval_grid: Tuple[int, int] = (0, 0),
) -> None:
    """Write ``person_search_<gallery_name>.json``, ``retrieval_<gallery_name>.png`` (when
    ``retrieval_grid`` = (queries, top-k) is not zero: the headline protocol's ranked lists) and,
    for CUHK-SYSU, ``gallery_size_<gallery_name>.png`` into ``output_dir``.

    The JSON holds the metrics and, per protocol (``labels[i]`` scored as ``searches[i]``), each
    query's AP / hits; ``ranked`` (the top detections) only for the headline protocol and the PRW
    modes, to keep the file small.
    """
    det_image = np.repeat(np.arange(gallery.num_images), np.diff(gallery.splits))
    image_ids = [str(d["image_id"]) for d in gallery_dicts]
    per_protocol: Dict[str, dict] = OrderedDict()
    for label, res in zip(labels, searches):
        with_lists = protocol == "prw" or label == headline
        entries = []
        for q, d in enumerate(query_dicts):
            e = {
                "query_index": int(d["query_index"]),
                "image_id": str(d["image_id"]),
                "identity": int(d["identity"]),
                "query_box": [float(v) for v in d["query_box"]],
                "ap": float(res.ap[q]),
                "num_gt": int(res.num_gt[q]),
                "num_tp": int(res.num_tp[q]),
            }
            e.update({f"top{k}": bool(res.hits[q, i]) for i, k in enumerate(res.topk)})
            if with_lists:
                e["ranked"] = [
                    {
                        "image_id": image_ids[det_image[j]],
                        "box": [round(float(v), 2) for v in gallery.boxes[j]],
                        "score": float(s),
                        "correct": bool(c),
                    }
                    for j, s, c in zip(
                        res.ranked_dets[q], res.ranked_scores[q], res.ranked_correct[q]
                    )
                    if j >= 0
                ]
            entries.append(e)
        per_protocol[label] = {
            "num_queries": res.num_queries,
            "num_queries_without_target": res.num_queries_without_target,
            "queries": entries,
        }
    payload = {
        "gallery_dataset": gallery_name,
        "query_datasets": list(query_names),
        "protocol": protocol,
        "headline": headline,
        "settings": dict(settings),
        "metrics": results,
        "detection_counts": {
            k: {"num_gt": v.num_gt, "num_tp": v.num_tp, "num_det": v.num_det}
            for k, v in detection.items()
        },
        "searches": per_protocol,
    }
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_json(payload, os.path.join(output_dir, f"person_search_{gallery_name}.json"))
    if min(retrieval_grid) > 0:
        draw_retrieval_grid(
            os.path.join(output_dir, f"retrieval_{gallery_name}.png"),
            searches[list(labels).index(headline)],
            gallery,
            query_dicts,
            gallery_dicts,
            num_queries=int(retrieval_grid[0]),
            topk=int(retrieval_grid[1]),
        )
    if protocol == "cuhk_sysu":
        sizes = [len(gallery_dicts) if label == "gfull" else int(label[1:]) for label in labels]
        plot_gallery_size_curve(
            sizes,
            [100.0 * r.mAP for r in searches],
            [100.0 * r.accuracy().get(1, 0.0) for r in searches],
            os.path.join(output_dir, f"gallery_size_{gallery_name}.png"),
        )


def plot_gallery_size_curve(
    sizes: Sequence[int],
    mean_ap: Sequence[float],
    top1: Sequence[float],
    path: str,
    title: str = "CUHK-SYSU: performance vs. gallery size",
) -> None:
    """Save mAP and top-1 (in %) against the gallery size (log axis) as a PNG, atomically."""
    # Matplotlib is imported only when a figure is drawn (an optional, heavy dependency).
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    xs = [sizes[i] for i in order]
    fig = Figure(figsize=(5, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, [mean_ap[i] for i in order], marker="o", label="mAP")
    ax.plot(xs, [top1[i] for i in order], marker="s", label="top-1")
    if len(xs) > 1 and xs[0] > 0:
        ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("gallery size")
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
