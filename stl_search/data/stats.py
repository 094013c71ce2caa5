"""Statistics of a registered data set: size, identities and their long tail.

Usage::

    python -m stl_search.data.stats synthetic_train --out long_tail.png

Prints images, boxes (labeled / unlabeled), identities and instances per identity with a
head/tail summary; ``--out`` saves the long-tail plot (instances per identity, by rank) as PNG.
Identities are the training labels (``person_id``) of a training split, the raw ``identity`` of a
gallery split, and the query identities of a query split.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog

from ..utils.cli import HelpFormatter
from ..utils.io import atomic_open

__all__ = ["compute_stats", "format_stats", "plot_long_tail", "main"]


def compute_stats(dicts: Sequence[dict]) -> Dict[str, Any]:
    """Counts of a list of data set dicts (scene splits or query splits)."""
    if dicts and "query_box" in dicts[0]:
        per_id = Counter(int(q["identity"]) for q in dicts)
        stats: Dict[str, Any] = {
            "kind": "query",
            "images": len({q["image_id"] for q in dicts}),
            "queries": len(dicts),
            "boxes": len(dicts),
        }
    else:
        training = any(a["person_id"] >= 0 for d in dicts for a in d.get("annotations", ()))
        key = "person_id" if training else "identity"
        annos = [a for d in dicts for a in d.get("annotations", ())]
        per_id = Counter(int(a[key]) for a in annos if a[key] >= 0)
        stats = {
            "kind": "train" if training else "gallery",
            "images": len(dicts),
            "boxes": len(annos),
            "labeled_boxes": sum(per_id.values()),
            "unlabeled_boxes": len(annos) - sum(per_id.values()),
            "images_without_labeled_person": sum(
                1 for d in dicts if not any(a[key] >= 0 for a in d.get("annotations", ()))
            ),
        }
        cams = Counter(int(d.get("camera_id", -1)) for d in dicts)
        if set(cams) != {-1}:
            stats["images_per_camera"] = {str(k): v for k, v in sorted(cams.items())}
    counts = sorted(per_id.values(), reverse=True)
    stats["identities"] = len(counts)
    stats["instances_per_identity"] = counts
    if counts:
        arr = np.asarray(counts)
        head = max(1, int(round(0.1 * len(arr))))
        stats["summary"] = {
            "max": int(arr.max()),
            "median": float(np.median(arr)),
            "mean": round(float(arr.mean()), 2),
            "min": int(arr.min()),
            "head_10pct_identities": head,
            "head_10pct_share_of_instances": round(float(arr[:head].sum() / arr.sum()), 3),
            "identities_seen_once": int((arr == 1).sum()),
            "identities_seen_twice": int((arr == 2).sum()),
            "identities_seen_3_to_9": int(((arr >= 3) & (arr <= 9)).sum()),
            "identities_seen_10_or_more": int((arr >= 10).sum()),
        }
    return stats


def format_stats(name: str, stats: Dict[str, Any]) -> str:
    """Human-readable report."""
    lines = [f"{name} ({stats['kind']} split)"]
    for k in (
        "images",
        "queries",
        "boxes",
        "labeled_boxes",
        "unlabeled_boxes",
        "images_without_labeled_person",
        "identities",
    ):
        if k in stats:
            lines.append(f"  {k.replace('_', ' ')}: {stats[k]}")
    if "images_per_camera" in stats:
        lines.append(
            "  images per camera: "
            + ", ".join(f"c{k}: {v}" for k, v in stats["images_per_camera"].items())
        )
    s = stats.get("summary")
    if s:
        lines.append(
            f"  instances per identity: max {s['max']}, median {s['median']}, "
            f"mean {s['mean']}, min {s['min']}"
        )
        lines.append(
            f"  head: the top {s['head_10pct_identities']} identities (10%) hold "
            f"{100 * s['head_10pct_share_of_instances']:.1f}% of the instances"
        )
        lines.append(
            f"  tail: {s['identities_seen_once']} identities seen once, "
            f"{s['identities_seen_twice']} twice, "
            f"{s['identities_seen_3_to_9']} 3-9 times, {s['identities_seen_10_or_more']} 10+ times"
        )
    return "\n".join(lines)


def plot_long_tail(counts: Sequence[int], path: str, title: str = "") -> None:
    """Bar plot of instances per identity sorted by frequency rank, saved as PNG (atomically)."""
    import matplotlib  # noqa: PLC0415  (optional heavy dependency, only for --out)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  (after the backend is chosen)

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    ranks = np.arange(1, len(counts) + 1)
    ax.bar(ranks, counts, width=1.0, color="#3b6ea8")
    ax.set_xlabel("identity (sorted by number of instances)")
    ax.set_ylabel("instances")
    ax.set_title(title or "instances per identity")
    ax.set_xlim(0.5, max(1, len(counts)) + 0.5)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(
        description="Statistics of a registered person-search data set.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("name", help="registered data set name, e.g. synthetic_train, prw_gallery")
    parser.add_argument("--out", help="PNG file for the long-tail histogram")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    args = parser.parse_args(argv)
    stats = compute_stats(DatasetCatalog.get(args.name))
    if args.json:
        print(
            json.dumps({k: v for k, v in stats.items() if k != "instances_per_identity"}, indent=1)
        )
    else:
        print(format_stats(args.name, stats))
    if args.out:
        plot_long_tail(
            stats["instances_per_identity"],
            args.out,
            f"{args.name}: {stats['identities']} identities, "
            f"{sum(stats['instances_per_identity'])} instances",
        )
        print(f"  long-tail histogram: {os.path.abspath(args.out)}")
    return stats


if __name__ == "__main__":
    main()
