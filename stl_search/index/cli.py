"""``python -m stl_search.index build|add|query``: a gallery index of images or video, searched
by a query person.

    python -m stl_search.index build --index DIR --config-file CFG (--input FOLDER_OR_GLOB |
        --video-input FILE --sample-fps F) [--backend exact|ivfpq|hnsw] [--num-gpus N ...]
        MODEL.WEIGHTS model_final.pth [KEY VALUE ...]
    python -m stl_search.index add --index DIR (--input ... | --video-input ... --sample-fps F)
    python -m stl_search.index query --index DIR (--query IMAGE --box X1 Y1 X2 Y2 |
        --query-embedding FILE.npy) [--topk 10] [--out PREFIX]

``build`` and ``add`` run under Detectron2's ``launch`` (``--num-gpus`` processes per machine;
CPU processes with gloo without a GPU; ``--num-machines``, ``--machine-rank``, ``--dist-url`` as
in ``train_net.py``; every machine must see the index folder). Running the same command again
after an interruption skips the finished shards. ``query`` writes ``PREFIX.json``,
``PREFIX.csv`` and ``PREFIX.png`` (the query beside its top hits).
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Sequence

import numpy as np
import torch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..compat import launch
from ..engine.predictor import PersonSearchPredictor
from ..engine.setup import load_config
from .backends import BACKENDS, load_searcher
from .builder import commit_index, config_of, extract_shards, plan_index
from .calibrate_split import add_calibrate_parser, run_calibrate
from .query import Hit, format_hits, search_index, write_hits
from .render import check_picture_path, render
from .search_command import add_search_parser, run_search
from .shards import GalleryIndex
from .sources import image_records, video_records

__all__ = ["main", "build_parser", "sources_from_args"]

logger = logging.getLogger("stl_search.index")


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--input", help="a folder of images, a glob (quoted) or one image")
    group.add_argument("--video-input", metavar="FILE", help="a video file (OpenCV)")
    parser.add_argument(
        "--sample-fps", type=float, default=1.0, help="frames per second taken from the video"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward")
    parser.add_argument(
        "--num-workers", type=int, default=0, help="data-loader workers per process"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per process (0: torch's default)"
    )
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument(
        "--dist-url", default="auto", help="tcp://HOST:PORT of machine 0 (needed for >1 machine)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="a new index")
    build.add_argument("--index", required=True, metavar="DIR")
    build.add_argument("--config-file", required=True, metavar="FILE")
    _add_input_arguments(build)
    build.add_argument("--images-per-shard", type=int, default=256)
    build.add_argument("--backend", choices=BACKENDS, default="exact")
    build.add_argument(
        "--embedding-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="stored embeddings (float32: the evaluator's default similarities, bit for bit)",
    )
    build.add_argument(
        "--ann-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="IVF-PQ: nlist, m, nbits, nprobe, rerank, train_size; HNSW: m, ef_construction, "
        "ef_search (see docs/index.md)",
    )
    build.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    add = sub.add_parser("add", help="append images or video to an index")
    add.add_argument("--index", required=True, metavar="DIR")
    _add_input_arguments(add)
    query = sub.add_parser("query", help="the top-k boxes for a query person")
    query.add_argument("--index", required=True, metavar="DIR")
    group = query.add_mutually_exclusive_group(required=True)
    group.add_argument("--query", metavar="IMAGE", help="image holding the query person")
    group.add_argument("--query-embedding", metavar="FILE.npy", help="a (D,) embedding")
    query.add_argument("--box", nargs=4, type=float, metavar=("X1", "Y1", "X2", "Y2"))
    query.add_argument("--topk", type=int, default=10)
    query.add_argument("--backend", choices=BACKENDS, help="default: the index's own")
    query.add_argument("--out", default="query_result", metavar="PREFIX")
    add_search_parser(sub)
    add_calibrate_parser(sub)
    return parser


def sources_from_args(args: argparse.Namespace) -> List[dict]:
    if args.input is not None:
        return [
            {
                "input": args.input,
                "kind": "images",
                "sample_fps": None,
                "records": image_records(args.input),
            }
        ]
    return [
        {
            "input": args.video_input,
            "kind": "video",
            "sample_fps": args.sample_fps,
            "records": video_records(args.video_input, args.sample_fps),
        }
    ]


def _extract_worker(folder: str, batch_size: int, num_workers: int, threads: int) -> None:
    setup_logger(name="stl_search", distributed_rank=comm.get_rank(), abbrev_name="stl")
    if threads:
        torch.set_num_threads(threads)
    extract_shards(folder, batch_size=batch_size, num_workers=num_workers)


def _ann_params(pairs: Sequence[str]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--ann-param takes KEY=VALUE, got {pair!r}")
        params[key] = float(value) if "." in value else int(value)
    return params


def run_build(args: argparse.Namespace) -> dict:
    """``build`` or ``add``: plan (machine 0 only), extract in every process, commit."""
    if args.machine_rank == 0:
        if args.command == "build":
            cfg = load_config(args.config_file, args.opts)
            plan_index(
                args.index,
                sources_from_args(args),
                cfg,
                images_per_shard=args.images_per_shard,
                backend=args.backend,
                ann_params=_ann_params(args.ann_param),
                embedding_dtype=args.embedding_dtype,
            )
        else:
            plan_index(args.index, sources_from_args(args))
    launch(
        _extract_worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args.index, args.batch_size, args.num_workers, args.threads),
    )
    if args.machine_rank != 0:
        return {}
    manifest = commit_index(args.index)
    boxes = sum(s["num_boxes"] for s in manifest["shards"])
    print(f"index {args.index}: {len(manifest['shards'])} shards, {boxes} boxes")
    if manifest["ann"]:
        ann = manifest["ann"]
        print(
            f"{ann['backend']}: recall@10 {ann['recall@10']:.3f}, recall@100 "
            f"{ann['recall@100']:.3f} against exact, {ann['bytes_per_box']:.1f} bytes per box"
        )
    return manifest


def run_query(args: argparse.Namespace) -> List[Hit]:
    check_picture_path(args.out + ".png")
    gallery = GalleryIndex.open(args.index)
    meta = {"index": args.index}
    if args.query_embedding:
        try:
            embedding = np.load(args.query_embedding, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"--query-embedding {args.query_embedding}: {e}") from None
        meta["embedding"] = args.query_embedding
    else:
        if args.box is None:
            raise ValueError("--query needs --box X1 Y1 X2 Y2")
        predictor = PersonSearchPredictor(config_of(gallery.manifest))
        embedding = predictor.embed_query(args.query, args.box)
        meta.update(image=args.query, box=list(args.box))
    hits = search_index(gallery, load_searcher(gallery, args.backend), embedding, args.topk)
    write_hits(hits, args.out + ".json", args.out + ".csv", meta)
    print(format_hits(hits))
    if args.query:
        render(args.query, args.box, hits, args.out + ".png")
    print(f"saved {args.out}.json, {args.out}.csv" + (f", {args.out}.png" if args.query else ""))
    return hits


def main(argv: Sequence[str] = None):
    args = build_parser().parse_args(argv)
    setup_logger(name="stl_search", distributed_rank=comm.get_rank(), abbrev_name="stl")
    if args.command == "query":
        return run_query(args)
    if args.command in ("search", "calibrate"):
        return (run_search if args.command == "search" else run_calibrate)(args)
    return run_build(args)


if __name__ == "__main__":
    main()
