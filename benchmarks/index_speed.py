#!/usr/bin/env python
"""Gallery index speed: extraction overhead, exact and IVF-PQ search at scale.

    python benchmarks/index_speed.py [--weights MODEL.pth] [--threads 2] [--images 24]
        [--sizes 100000 1000000] [--queries 200] [--reduce pca128 pca64 opq128]

1. **Extraction**: ``--images`` frames of the synthetic gallery through the index build (decode,
   mapper, batched forward, shard + manifest writes, hashes; one process, batches of 4) against
   the model alone on the same batches, already mapped (the batched inference throughput).
   Interleaved rounds; the overhead is the median of the per-round ratios.
2. **Embeddings with realistic structure**: the model's query-path embeddings of every annotated
   person of the synthetic gallery and query frames (identities known). From them: the real
   identity centres (mean embedding per identity) and the real within-identity residuals (each
   crop minus its centre). A synthetic box embedding is ``normalize(centre + residual)`` with
   a real residual drawn at random and a synthetic identity centre ``normalize(c_a + c_b +
   0.5 n)`` (two real centres drawn at random, ``n`` Gaussian of a real centre's norm): new
   identities mixed from real appearance, each with ~40 boxes; within- and across-identity
   cosines are printed beside the real ones.
3. **Search**: for each ``--sizes`` N, N such boxes (float16, memory-mapped as the shards are):
   exact inner product (``IndexFlatIP``) for N <= 100k; IVF-PQ (``nlist`` 1024, 64 bytes of code,
   ``nprobe`` 32, top 1000 re-ranked with the float16 vectors on disk) for N >= 1M. Queries are
   ``--queries`` held-out boxes (not in the index) of the indexed identities, one at a time;
   p50 / p95 latency, recall@100 against exact, bytes per box in memory. With ``--reduce``,
   per reduction also exact search over the reduced vectors (the PCA or OPQ chain of
   ``index build --reduce``, trained on up to 100k of the boxes) against exact search over the
   full ones: the recall@100 the reduction alone costs, whatever back end then searches it.

The 10M-box row is skipped by default: ``--sizes 10000000 --images 0`` took 14 min 45 s on 2
cores (10 min of it the IVF-PQ training and encoding), 5 GiB of disk for the float16 vectors and
up to 18.3 GiB of memory (the exact ground truth's float32 copy is 9.8 GiB).
The reduced stores' IVF-PQ at scale (vectors generated at the reduced dimension) has its own
rows, 1M and 10M boxes: ``benchmarks/reduced_scale.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import faiss
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402

import stl_search  # noqa: E402,F401  (registers the model and the synthetic data set)
from stl_search.engine.checkpoint import PersonSearchCheckpointer  # noqa: E402
from stl_search.engine.model import resolve_inference_metadata  # noqa: E402
from stl_search.engine.predictor import PersonSearchPredictor  # noqa: E402
from stl_search.engine.setup import load_config  # noqa: E402
from stl_search.index.backends import (  # noqa: E402
    ANNSearcher,
    ExactSearcher,
    build_ann,
    fit_projection,
)
from stl_search.index.builder import commit_index, extract_shards, plan_index  # noqa: E402
from stl_search.index.shards import GalleryIndex  # noqa: E402
from stl_search.index.sources import load_record  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402

CONFIG = os.path.join(os.path.dirname(HERE), "configs", "synthetic", "person_search.yaml")


def predictor_for(weights: str) -> PersonSearchPredictor:
    """The synthetic model with ``weights`` loaded as an initialisation loads them (a trained model,
    or an STL export whose RPN and box head stay random: the embeddings need only its
    identification path); random weights without a file."""
    if weights:
        cfg = resolve_inference_metadata(load_config(CONFIG), weights)
    else:
        cfg = load_config(CONFIG, ["MODEL.PERSON_SEARCH.NUM_IDENTITIES", "100"])
    seed_all_rng(0)
    model = build_model(cfg)
    if weights:
        PersonSearchCheckpointer(model).resume_or_load(weights, resume=False)
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return PersonSearchPredictor(cfg, model=model)


def extraction(predictor: PersonSearchPredictor, files: List[str], rounds: int) -> Dict:
    """Wall and process-CPU seconds per round of: the model alone on mapped batches; decoding +
    mapping alone; the index's extraction (:func:`extract_shards`: loader, mapper, model, shard
    writes); and the fixed cost of a build (plan with the weights' sha256, commit with hashes)."""
    records = [{"file_name": f, "frame_index": -1, "timestamp": -1.0} for f in files]
    source = {"input": "bench", "kind": "images", "sample_fps": None, "records": records}

    def mapped() -> list:
        return [predictor.gallery_mapper(load_record(r, predictor.input_format)) for r in records]

    inputs = mapped()
    batches = [inputs[i : i + 4] for i in range(0, len(inputs), 4)]
    times = {"model": [], "decode_map": [], "extract": [], "plan_commit": []}

    def model_only() -> None:
        for batch in batches:
            predictor.detect_mapped(batch)

    def timed(name, fn) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        times[name].append((time.perf_counter() - wall, time.process_time() - cpu))

    def index_build() -> None:
        with tempfile.TemporaryDirectory() as folder:
            timed(
                "plan_commit",
                lambda: plan_index(
                    folder, [source], predictor.cfg, images_per_shard=8, predictor=predictor
                ),
            )
            timed("extract", lambda: extract_shards(folder, batch_size=4, predictor=predictor))
            timed("plan_commit", lambda: commit_index(folder))

    model_only()  # warm-up
    for r in range(rounds):
        steps = [
            lambda: timed("model", model_only),
            index_build,
            lambda: timed("decode_map", mapped),
        ]
        for step in steps if r % 2 == 0 else steps[::-1]:
            step()
    n = len(files)
    out = {"rounds": rounds, "per_round_wall_ratio": []}
    for c, clock in enumerate(("wall", "cpu")):
        model = [t[c] for t in times["model"]]
        extract = [t[c] for t in times["extract"]]
        ratios = [e / m for e, m in zip(extract, model)]
        out[clock] = {
            "model_img_s": n / statistics.median(model),
            "extract_img_s": n / statistics.median(extract),
            "overhead": statistics.median(ratios) - 1.0,
            "decode_map_ms": 1e3 * statistics.median(t[c] for t in times["decode_map"]) / n,
            "plan_commit_s": sum(t[c] for t in times["plan_commit"]) / rounds,
        }
        if clock == "wall":
            out["per_round_wall_ratio"] = ratios
    return out


def real_embeddings(predictor: PersonSearchPredictor, max_frames: int):
    """Query-path embeddings of the labeled persons of the first synthetic training frames."""
    embeddings, labels = [], []
    for record in DatasetCatalog.get("synthetic_train")[:max_frames]:
        annos = [a for a in record["annotations"] if a.get("identity", -1) >= 0]
        if not annos:
            continue
        boxes = np.array([a["bbox"] for a in annos], dtype=np.float64)
        embeddings.append(predictor.embed_query(record["file_name"], boxes))
        labels.extend(a["identity"] for a in annos)
    return np.concatenate(embeddings), np.array(labels)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Generator:
    """Synthetic boxes from real identity centres and real within-identity residuals."""

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray, seed: int = 0):
        ids = np.unique(labels)
        self.centres = _normalize(np.stack([embeddings[labels == i].mean(0) for i in ids]))
        index_of = {i: k for k, i in enumerate(ids)}
        self.residuals = embeddings - self.centres[[index_of[i] for i in labels]]
        self.rng = np.random.default_rng(seed)

    def identities(self, n: int) -> np.ndarray:
        a, b = self.rng.integers(0, len(self.centres), (2, n))
        noise = self.rng.standard_normal((n, self.centres.shape[1])).astype(np.float32)
        noise *= 0.5 / np.sqrt(self.centres.shape[1])
        return _normalize(self.centres[a] + self.centres[b] + noise).astype(np.float32)

    def boxes(self, centres: np.ndarray, of: np.ndarray) -> np.ndarray:
        r = self.rng.integers(0, len(self.residuals), len(of))
        return _normalize(centres[of] + self.residuals[r]).astype(np.float32)


def cosines(emb: np.ndarray, labels: np.ndarray, rng, n: int = 20000):
    i, j = rng.integers(0, len(emb), (2, n))
    same = (labels[i] == labels[j]) & (i != j)
    sims = np.einsum("nd,nd->n", emb[i], emb[j])
    within = sims[same].mean() if same.any() else float("nan")
    return float(within), float(sims[~same].mean())


def gallery_of(folder: str, vectors16: np.ndarray) -> GalleryIndex:
    """An in-memory :class:`GalleryIndex` over one memory-mapped float16 shard (no model)."""
    path = os.path.join(folder, "shard_00000.emb.npy")
    np.save(path, vectors16)
    n, dim = vectors16.shape
    return GalleryIndex(
        folder=folder,
        manifest={"embedding_dim": dim},
        embeddings=[np.load(path, mmap_mode="r")],
        boxes=np.zeros((n, 4), np.float32),
        scores=np.ones(n, np.float32),
        file_name=np.array(["bench"]).repeat(n),
        frame_index=np.full(n, -1),
        timestamp=np.full(n, -1.0),
    )


def latencies(searcher, queries: np.ndarray, k: int):
    """``(wall p50, wall p95, CPU p50)`` in ms of single queries, and their top-k ids. With one
    FAISS thread, the process CPU time of a query is its work, whatever else runs on the cores."""
    wall, cpu, ids = [], [], []
    for q in queries:
        start, start_cpu = time.perf_counter(), time.process_time()
        _, found = searcher.search(q[None], k)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        ids.append(found[0])
    ms = [np.percentile(wall, 50) * 1e3, np.percentile(wall, 95) * 1e3]
    return f"{ms[0]:.1f} / {ms[1]:.1f} (CPU {np.percentile(cpu, 50) * 1e3:.1f})", np.array(ids)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


class ReducedExact:
    """Exact inner-product search over ``reduce``'s projection of a gallery (``fit_projection``:
    the PCA or OPQ chain a reduced store applies, trained on up to 100k of its boxes): what the
    reduction alone loses against exact search over the full vectors."""

    def __init__(self, gallery: GalleryIndex, reduce: str, rng):
        n = len(gallery)
        sample = np.sort(rng.choice(n, min(n, 100_000), replace=False))
        self.project = fit_projection(gallery.rows(sample), reduce)
        blocks = (np.arange(i, min(i + 200_000, n)) for i in range(0, n, 200_000))
        reduced = np.concatenate([self.project(gallery.rows(b)) for b in blocks])
        self.index = faiss.IndexFlatIP(reduced.shape[1])
        self.index.add(reduced)

    def search(self, queries: np.ndarray, k: int):
        return self.index.search(self.project(queries), k)


def search_rows(
    gen: Generator, sizes: List[int], num_queries: int, k: int, reduce: List[str] = ()
) -> None:
    print(
        "| boxes | back end | build s | query ms, wall p50 / p95 (CPU p50) | recall@100 vs exact "
        "| in memory |"
    )
    print("|---|---|---|---|---|---|")
    for n in sizes:
        ids = gen.identities(max(n // 40, 1))
        of = gen.rng.integers(0, len(ids), n)
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            gallery = gallery_of(
                folder,
                np.concatenate(
                    [
                        gen.boxes(ids, of[i : i + 500_000]).astype(np.float16)
                        for i in range(0, n, 500_000)
                    ]
                ),
            )
            queries = gen.boxes(ids, of[gen.rng.integers(0, n, num_queries)])  # held out
            made = time.perf_counter() - start
            start = time.perf_counter()
            exact = ExactSearcher(gallery)
            exact_s = time.perf_counter() - start
            exact_ms, truth = latencies(exact, queries, k)
            mem = exact.index.ntotal * exact.index.d * 4
            for r in reduce:
                start = time.perf_counter()
                reduced = ReducedExact(gallery, r, gen.rng)
                fit_s = time.perf_counter() - start
                ms, found = latencies(reduced, queries, k)
                d = reduced.index.d
                print(
                    f"| {n:,} | exact over {r} ({d}-d; the reduction alone) | {fit_s:.1f} | "
                    f"{ms} | {recall(found, truth):.3f} | {2 * d} B/box as float16 |"
                )
            if n <= 100_000:
                print(
                    f"| {n:,} | exact (IndexFlatIP) | {exact_s:.1f} | {exact_ms} | "
                    f"1 | {mem / 2**20:.0f} MiB ({mem / n:.0f} B/box) |"
                )
                continue
            start = time.perf_counter()
            entry = build_ann(gallery, "ivfpq")
            build_s = time.perf_counter() - start
            searcher = ANNSearcher(
                gallery, faiss.read_index(os.path.join(folder, entry["file"])), entry
            )
            ann_ms, found = latencies(searcher, queries, k)
            print(
                f"| {n:,} | exact (IndexFlatIP), for reference | {exact_s:.1f} | "
                f"{exact_ms} | 1 | {mem / 2**20:.0f} MiB |"
            )
            ann_mem = entry["bytes_per_box"] * n / 2**20
            print(
                f"| {n:,} | IVF{entry['nlist']},PQ{entry['m']} nprobe {entry['nprobe']} + re-rank "
                f"{entry['rerank']} | {build_s:.1f} | {ann_ms} | "
                f"{recall(found, truth):.3f} | {ann_mem:.0f} MiB ({entry['bytes_per_box']:.1f} "
                f"B/box; + {2 * gallery.dim} B/box float16 on disk, memory-mapped) |"
            )
            print(
                f"  (vectors generated in {made:.0f} s; build_ann's own recall@100 on 200 indexed "
                f"boxes: {entry['recall@100']:.3f})",
                flush=True,
            )
            del exact, searcher, gallery


def extraction_rows(predictor: PersonSearchPredictor, args: argparse.Namespace) -> None:
    files = [r["file_name"] for r in DatasetCatalog.get("synthetic_gallery")[: args.images]]
    ext = extraction(predictor, files, args.rounds)
    print(
        f"\nextraction, {len(files)} frames 320x192, batches of 4, medians of {args.rounds} rounds"
    )
    print(
        "| clock | model alone (mapped batches) | index extraction (loader, decode, mapper, model, "
        "shard writes) | index over model (target < +10%) | decode + map alone | plan + commit |"
    )
    print("|---|---|---|---|---|---|")
    for clock in ("wall", "cpu"):
        e = ext[clock]
        print(
            f"| {clock} | {e['model_img_s']:.2f} img/s | {e['extract_img_s']:.2f} img/s | "
            f"{100 * e['overhead']:+.1f}% | {e['decode_map_ms']:.1f} ms/img | "
            f"{e['plan_commit_s']:.2f} s per build |"
        )
    print(
        "  per-round wall ratios index/model: "
        + ", ".join(f"{r:.2f}" for r in ext["per_round_wall_ratio"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--weights",
        default="",
        help="a person-search checkpoint or an STL export, loaded as an initialisation (none: "
        "random weights)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on an oversubscribed machine, 2 OpenMP threads spin-wait for "
        "each other and a forward takes 10x the CPU time)",
    )
    parser.add_argument("--images", type=int, default=24, help="0: no extraction rows")
    parser.add_argument("--rounds", type=int, default=2, help="extraction rounds (median)")
    parser.add_argument(
        "--frames", type=int, default=200, help="gallery frames embedded for structure"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="none: extraction only"
    )
    parser.add_argument("--queries", type=int, default=200, help="queries per gallery size")
    parser.add_argument(
        "--reduce",
        nargs="*",
        default=[],
        help="also exact search over these reductions (pca128, opq128, ...), recall@100 against "
        "exact search over the full vectors",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(1)  # single queries gain nothing from threads on a shared machine
    run(args, predictor_for(args.weights))


def run(args: argparse.Namespace, predictor: PersonSearchPredictor) -> None:
    print(
        f"model: configs/synthetic/person_search.yaml, weights: {args.weights or 'random'}; "
        f"torch {args.threads} threads, FAISS 1 thread"
    )

    if args.images:
        extraction_rows(predictor, args)
    if not args.sizes:
        return
    start = time.perf_counter()
    emb, labels = real_embeddings(predictor, args.frames)
    gen = Generator(emb, labels)
    rng = np.random.default_rng(2)
    ids = gen.identities(500)
    of = rng.integers(0, 500, 20000)
    print(
        f"\nreal embeddings: {len(emb)} persons of {len(np.unique(labels))} identities "
        f"({time.perf_counter() - start:.0f} s); cosine within / across identities: "
        "%.3f / %.3f real, %.3f / %.3f synthetic"
        % (*cosines(emb, labels, rng), *cosines(gen.boxes(ids, of), of, rng))
    )
    print()
    search_rows(gen, args.sizes, args.queries, k=100, reduce=args.reduce)


if __name__ == "__main__":
    main()
