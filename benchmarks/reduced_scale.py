#!/usr/bin/env python
"""Reduced-dimension stores at scale: N boxes of d-dim embeddings in IVF-PQ, on one machine.

    python benchmarks/reduced_scale.py [--sizes 1000000] [--dims 256 128] [--queries 200]
        [--nlist 1024] [--threads 2]

What an index with ``--reduce pca256`` (or ``pca128``) and ``--backend ivfpq`` holds per box
after the projection: vectors of ``d`` dimensions (clustered: 25 000-box identities... see
:func:`clustered`), an ``IVF{nlist},PQ{d/8}x8`` store in memory (``d/8`` bytes of code + 8 of
id per box) and, as the reduced float16 vectors a store could re-rank with, ``2 d`` bytes per box
on disk (memory-mapped). For each size and dimension: build time (train on 65 536 boxes + add),
bytes per box in memory (serialized store / N), single-query p50 / p99 latency with the top 1000
re-ranked from the float16 memory map, and recall@100 against exact search over the same
``d``-dim vectors (the projection's own loss is the test suite's and the evaluator's concern:
docs/scale.md).

The full 2048-d float16 vectors are not generated: 10M of them are 40 GB, more than this
machine's memory; the reduced store is what has to fit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import faiss
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.machine import cpu_line  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402


def clustered(n: int, dim: int, seed: int, chunk: int = 250_000):
    """Chunks of ``n`` unit vectors: identities of ~40 boxes around random centres whose spread
    decays over the dimensions (as a PCA output's variance does), within-identity noise 0.5 x."""
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(1.0 + np.arange(dim) / 8.0)).astype(np.float32)
    centres = rng.standard_normal((max(n // 40, 1), dim), dtype=np.float32) * scale
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ids = rng.integers(0, len(centres), m)
        x = centres[ids] + 0.5 * rng.standard_normal((m, dim), dtype=np.float32) * scale
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def row(n: int, dim: int, nlist: int, num_queries: int, folder: str) -> dict:
    """Build the store of ``n`` boxes of ``dim`` dimensions, query it, return the figures."""
    path = os.path.join(folder, f"reduced_{n}_{dim}.f16")
    vectors = np.lib.format.open_memmap(path, "w+", np.float16, (n, dim))
    start = 0
    for block in clustered(n, dim, seed=0):
        vectors[start : start + len(block)] = block
        start += len(block)
    vectors.flush()
    queries = next(clustered(num_queries, dim, seed=1))  # held out: not in the store
    index = faiss.index_factory(dim, f"IVF{nlist},PQ{dim // 8}x8", faiss.METRIC_INNER_PRODUCT)
    tic = time.perf_counter()
    sample = np.sort(np.random.default_rng(2).choice(n, min(n, 65536), replace=False))
    index.train(np.asarray(vectors[sample], dtype=np.float32))
    train_s = time.perf_counter() - tic
    for s in range(0, n, 250_000):
        index.add(np.asarray(vectors[s : s + 250_000], dtype=np.float32))
    build_s = time.perf_counter() - tic
    faiss.extract_index_ivf(index).nprobe = 32
    truth = np.empty((num_queries, 100), dtype=np.int64)
    best = np.full((num_queries, 100), -np.inf, dtype=np.float32)
    for s in range(0, n, 250_000):  # exact top-100 over the same vectors, in blocks
        sims = queries @ np.asarray(vectors[s : s + 250_000], dtype=np.float32).T
        cand = np.concatenate([best, sims], axis=1)
        ids = np.concatenate([truth, np.arange(s, s + sims.shape[1])[None].repeat(len(sims), 0)], 1)
        top = np.argsort(-cand, axis=1)[:, :100]
        best, truth = np.take_along_axis(cand, top, 1), np.take_along_axis(ids, top, 1)
    times, hits = [], []
    for q in range(num_queries):
        tic = time.perf_counter()
        _, cand = index.search(queries[q : q + 1], 1000)
        cand = np.sort(cand[0][cand[0] >= 0])
        exact = np.asarray(vectors[cand], dtype=np.float32) @ queries[q]
        found = cand[np.argsort(-exact, kind="stable")[:100]]
        times.append(time.perf_counter() - tic)
        hits.append(len(set(found.tolist()) & set(truth[q].tolist())) / 100)
    os.remove(path)
    return {
        "n": n,
        "dim": dim,
        "train_s": train_s,
        "build_s": build_s,
        "memory_bytes_per_box": faiss.serialize_index(index).size / n,
        "disk_bytes_per_box": 2 * dim,
        "p50_ms": 1e3 * float(np.percentile(times, 50)),
        "p99_ms": 1e3 * float(np.percentile(times, 99)),
        "recall@100": float(np.mean(hits)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000], help="boxes per row")
    parser.add_argument(
        "--dims", type=int, nargs="+", default=[256, 128], help="reduced dimensions"
    )
    parser.add_argument("--queries", type=int, default=200, help="queries timed per row")
    parser.add_argument("--nlist", type=int, default=1024, help="IVF lists")
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads")
    parser.add_argument("--folder", default=None, help="for the float16 vectors (default: temp)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    print(f"{cpu_line()}, load average {os.getloadavg()[0]:.1f}, faiss {faiss.__version__}")
    print(f"IVF{args.nlist},PQ(d/8)x8, nprobe 32, top 1000 re-ranked from float16 on disk")
    print(
        "| boxes | dim | train s | build s | memory B/box | disk B/box | p50 ms | p99 ms | "
        "recall@100 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        for n in args.sizes:
            for dim in args.dims:
                r = row(n, dim, args.nlist, args.queries, folder)
                print(
                    f"| {n:,} | {dim} | {r['train_s']:.1f} | {r['build_s']:.1f} | "
                    f"{r['memory_bytes_per_box']:.1f} | {r['disk_bytes_per_box']} | "
                    f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['recall@100']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
