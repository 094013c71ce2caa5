#!/usr/bin/env python
"""Query latency after load: a :class:`~stl_search.index.session.QuerySession` over a 100k-box
index answering one query at a time (top-k hits + sightings over the top 1000 candidates).

    python benchmarks/query_speed.py [--boxes 100000] [--queries 50] [--threads 2]

The index is written to a temporary folder in the real on-disk format (shards of float16
embeddings + manifest, as ``index build`` writes them) but its embeddings are **random** unit
vectors (D = 256), its boxes are fixed and its sources are 20 synthetic videos sampled at 2 fps:
only the search and grouping part is measured, not the model. Queries are perturbed copies of
indexed boxes (so that the top candidates are a real neighbourhood), a few with a filter (one
camera, a time range). Prints the load time (open + sha256 checks + FAISS index), then per
configuration p50 / p95 latency of ``session.search`` (the figure the goal "< 1 s on 2 cores"
is about); the image-query embedding (one forward of the model) comes on top and is measured
by ``benchmarks/inference_speed.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import faiss
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from stl_search.index.manifest import FORMAT, write_manifest  # noqa: E402
from stl_search.index.session import Filters, QuerySession  # noqa: E402
from stl_search.index.shards import write_shard  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402
from stl_search.utils.io import sha256_of  # noqa: E402


def write_random_index(folder: str, boxes: int, dim: int = 256, videos: int = 20) -> None:
    """An index of ``boxes`` random embeddings over ``videos`` 25 fps videos sampled at 2 fps,
    4 boxes per sampled frame, 10000 boxes per shard."""
    rng = np.random.default_rng(0)
    per_frame, per_shard = 4, 10000
    frames = boxes // per_frame
    shards = []
    for number, start in enumerate(range(0, frames, per_shard // per_frame)):
        rows = range(start, min(frames, start + per_shard // per_frame))
        records = [
            {
                "file_name": f"cam{r % videos:02d}.mp4",
                "frame_index": (r // videos) * 12,
                "timestamp": (r // videos) * 12 / 25.0,
            }
            for r in rows
        ]
        emb = rng.standard_normal((len(records) * per_frame, dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        write_shard(
            folder,
            number,
            "bench",
            records,
            boxes=np.tile([[10, 20, 60, 160]], (len(emb), 1)),
            scores=np.ones(len(emb)),
            record_rows=np.repeat(np.arange(len(records)), per_frame),
            embeddings=emb,
        )
        base = os.path.join(folder, f"shard_{number:05d}")
        shards.append(
            {
                "name": f"shard_{number:05d}",
                "number": number,
                "num_records": len(records),
                "num_boxes": len(emb),
                "sha256": sha256_of(base + ".npz"),
                "embeddings_sha256": sha256_of(base + ".emb.npy"),
            }
        )
    sources = [
        {"input": f"cam{v:02d}.mp4", "kind": "video", "sample_fps": 25 / 12, "num_records": 0}
        for v in range(videos)
    ]
    write_manifest(
        folder,
        {
            "format": FORMAT,
            "index_id": "bench",
            "config": "",
            "weights_sha256": None,
            "score_thresh": 0.5,
            "images_per_shard": per_shard // per_frame,
            "embedding_dim": dim,
            "embedding_dtype": "float16",
            "backend": "exact",
            "ann": None,
            "sources": sources,
            "shards": shards,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--boxes", type=int, default=100_000, help="boxes in the random index")
    parser.add_argument("--queries", type=int, default=50, help="queries timed per row")
    parser.add_argument("--threads", type=int, default=2, help="FAISS / torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="query_speed_") as folder:
        start = time.perf_counter()
        write_random_index(folder, args.boxes)
        print(f"wrote a {args.boxes}-box random index in {time.perf_counter() - start:.1f} s")
        session = QuerySession(folder)
        print(
            f"load (open, sha256 checks, exact FAISS index): {session.load_seconds:.2f} s, "
            f"{len(session.gallery)} boxes, {args.threads} threads"
        )
        rng = np.random.default_rng(1)
        vectors = session.gallery.rows(rng.choice(len(session.gallery), args.queries))
        queries = vectors + 0.3 * rng.standard_normal(vectors.shape).astype(np.float32) / 16
        configs = {
            "top-10 + sightings of 1000 candidates": dict(),
            "same, threshold 0.5": dict(min_similarity=0.5),
            "camera filter (exact over 5k boxes)": dict(filters=Filters(cameras=["cam03"])),
            "time-range filter (exact over ~30k)": dict(filters=Filters(time_range=(0, 300))),
        }
        for name, kwargs in configs.items():
            session.search(queries[0], **kwargs)  # warm-up
            times = []
            for q in queries:
                t0 = time.perf_counter()
                session.search(q, **kwargs)
                times.append(time.perf_counter() - t0)
            p95 = sorted(times)[int(0.95 * (len(times) - 1))]
            print(
                f"{name:<40} p50 {1000 * statistics.median(times):7.1f} ms   "
                f"p95 {1000 * p95:7.1f} ms"
            )


if __name__ == "__main__":
    main()
