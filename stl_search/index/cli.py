"""``python -m stl_search.index build|add|train|query``: a gallery index of images or video,
searched by a query person.

    python -m stl_search.index build --index DIR --config-file CFG (--input FOLDER_OR_GLOB |
        --video-input FILE --sample-fps F) [--backend exact|ivfpq|hnsw] [--num-gpus N ...]
        [--export DIR] MODEL.WEIGHTS model_final.pth [KEY VALUE ...]
    python -m stl_search.index add --index DIR (--input ... | --video-input ... --sample-fps F)
        [MODEL.WEIGHTS PATH]
    python -m stl_search.index train --index DIR --backend exact|ivfpq|hnsw [--ann-param K=V ...]
        [--reduce pcaN|opqN [--drop-full]]
    python -m stl_search.index query --index DIR (--query IMAGE --box X1 Y1 X2 Y2 |
        --query-embedding FILE.npy) [--topk 10] [--out PREFIX] [--export DIR] [MODEL.WEIGHTS PATH]

``--export DIR`` runs an ONNX or TorchScript export of the index's weights (onnxruntime, the
fast CPU path; docs/deploying.md) instead of PyTorch.

``build`` and ``add`` run under Detectron2's ``launch`` (``--num-gpus`` processes per machine;
CPU processes with gloo without a GPU; ``--num-machines``, ``--machine-rank``, ``--dist-url`` as
in ``train_net.py``; every machine must see the index folder). Running the same command again
after an interruption skips the finished shards. ``train`` (re)builds the search back end on the
index's shards. ``build``, ``add`` and ``train`` hold the index folder's lock. ``add`` and
``query`` take the index's weights at another path (``MODEL.WEIGHTS``, checked by sha256).
``query`` writes ``PREFIX.json``, ``PREFIX.csv`` and ``PREFIX.png`` (the query beside its hits).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from typing import Iterator, List, Sequence

import numpy as np
import torch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..compat import launch
from ..engine.setup import load_config
from ..export.predictor import exported_predictor
from ..utils.cli import HelpFormatter
from ..utils.output_dir import lock_output_dir, release_output_dir
from .arguments import non_negative_int, positive_int
from .backends import BACKENDS, load_searcher
from .builder import commit_index, extract_shards, plan_index, set_backend
from .calibrate_split import add_calibrate_parser, run_calibrate
from .manifest import PLAN, read_manifest, read_plan
from .model import config_of, index_predictor
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
    parser.add_argument("--batch-size", type=positive_int, default=4, help="images per forward")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--num-workers", type=non_negative_int, default=0, help="data-loader workers per process"
    )
    parser.add_argument(
        "--threads",
        type=non_negative_int,
        default=0,
        help="torch threads per process (0: torch's default)",
    )
    _add_export_argument(parser)
    parser.add_argument("--num-gpus", type=positive_int, default=1, help="processes per machine")
    parser.add_argument(
        "--num-machines",
        type=positive_int,
        default=1,
        help="machines of the job (docs/multi-machine.md)",
    )
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="this machine's rank (0: plans and commits)"
    )
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="tcp://HOST:PORT of machine 0, the same on every machine (needed for >1 machine)",
    )


def _add_export_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export",
        metavar="DIR",
        help="run the ONNX or TorchScript export in DIR (python -m stl_search.export) instead "
        "of PyTorch; refused unless made from the index's weights (sha256)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.index",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="a new index", formatter_class=HelpFormatter)
    build.add_argument("--index", required=True, metavar="DIR", help="the new index's folder")
    build.add_argument("--config-file", required=True, metavar="FILE", help="model config (YAML)")
    _add_input_arguments(build)
    build.add_argument(
        "--images-per-shard", type=positive_int, default=256, help="images per shard (unit of work)"
    )
    build.add_argument(
        "--embedding-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="stored embeddings (float32: the evaluator's default similarities, bit for bit)",
    )
    _add_backend_arguments(build, default="exact")
    build.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    add = sub.add_parser(
        "add", help="append images or video to an index", formatter_class=HelpFormatter
    )
    add.add_argument("--index", required=True, metavar="DIR", help="the index's folder")
    _add_input_arguments(add)
    add.add_argument("opts", nargs=argparse.REMAINDER, help=_WEIGHTS_HELP)
    train = sub.add_parser(
        "train",
        help="(re)build the search back end on the index's shards",
        formatter_class=HelpFormatter,
    )
    train.add_argument("--index", required=True, metavar="DIR", help="the index's folder")
    _add_backend_arguments(train, default=None)
    query = sub.add_parser(
        "query", help="the top-k boxes for a query person", formatter_class=HelpFormatter
    )
    query.add_argument("--index", required=True, metavar="DIR", help="the index's folder")
    group = query.add_mutually_exclusive_group(required=True)
    group.add_argument("--query", metavar="IMAGE", help="image holding the query person")
    group.add_argument("--query-embedding", metavar="FILE.npy", help="a (D,) embedding")
    query.add_argument(
        "--box",
        nargs=4,
        type=float,
        metavar=("X1", "Y1", "X2", "Y2"),
        help="the query person's box in --query, in pixels",
    )
    query.add_argument("--topk", type=positive_int, default=10, help="hits returned")
    _add_export_argument(query)
    query.add_argument("--backend", choices=BACKENDS, help="default: the index's own")
    query.add_argument(
        "--out", default="query_result", metavar="PREFIX", help="PREFIX.json, .csv and .png"
    )
    add_search_parser(sub)
    add_calibrate_parser(sub)
    query.add_argument("opts", nargs=argparse.REMAINDER, help=_WEIGHTS_HELP)
    return parser


_WEIGHTS_HELP = "MODEL.WEIGHTS PATH: the index's weights moved there (checked by sha256)"


def _add_backend_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default,
        required=not default,
        help="search back end (docs/index.md)",
    )
    parser.add_argument(
        "--ann-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="IVF-PQ: nlist, m, nbits, nprobe, rerank, train_size; HNSW: m, ef_construction, "
        "ef_search (see docs/index.md)",
    )
    parser.add_argument(
        "--reduce",
        metavar="pcaN|opqN",
        help="search a store reduced to N dimensions (PCA or OPQ trained on the gallery)",
    )
    parser.add_argument(
        "--drop-full",
        action="store_true",
        help="with --reduce: delete the full embeddings once the reduced store is committed",
    )


def _weights_override(opts: Sequence[str]) -> str:
    """The path of ``MODEL.WEIGHTS PATH``, the one override ``add`` and ``query`` take (the
    index's config is fixed: other keys would change its embeddings)."""
    if not opts:
        return None
    if len(opts) != 2 or opts[0] != "MODEL.WEIGHTS":
        raise ValueError(
            f"add and query take no config overrides but MODEL.WEIGHTS PATH, got {list(opts)}"
        )
    return opts[1]


@contextlib.contextmanager
def _locked(folder: str, existing: bool) -> Iterator[None]:
    """Hold the lock of the index ``folder`` (``existing``: it must already be an index)."""
    if existing:
        read_manifest(folder)
    lock_output_dir(folder, what="index folder")
    try:
        yield
    finally:
        release_output_dir(folder)


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


def _extract_worker(
    folder: str,
    batch_size: int,
    num_workers: int,
    threads: int,
    export_dir: str = None,
    quiet: bool = False,
) -> None:
    setup_logger(name="stl_search", distributed_rank=comm.get_rank(), abbrev_name="stl")
    if threads:
        torch.set_num_threads(threads)
    extract_shards(
        folder,
        batch_size=batch_size,
        num_workers=num_workers,
        export_dir=export_dir,
        num_threads=threads or None,
        quiet=quiet,
    )


def _ann_params(pairs: Sequence[str], args: argparse.Namespace = None) -> dict:
    """``--ann-param KEY=VALUE`` pairs as a dict of strings, with ``--reduce`` and
    ``--drop-full`` of ``args`` (checked by the back end)."""
    params = {}
    if args is not None and args.reduce:
        params.update(reduce=args.reduce, drop_full=args.drop_full)
    elif args is not None and args.drop_full:
        params["drop_full"] = True
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--ann-param takes KEY=VALUE, got {pair!r}")
        params[key] = value
    return params


def run_build(args: argparse.Namespace) -> dict:
    """``build`` or ``add``: plan (machine 0 only), extract in every process, commit."""
    if args.machine_rank != 0:
        return _extract_and_commit(args)
    with _locked(args.index, existing=args.command == "add"):
        if args.command == "build":
            cfg = load_config(args.config_file, args.opts)
            plan_index(
                args.index,
                sources_from_args(args),
                cfg,
                images_per_shard=args.images_per_shard,
                backend=args.backend,
                ann_params=_ann_params(args.ann_param, args),
                embedding_dtype=args.embedding_dtype,
            )
        else:
            weights = _weights_override(args.opts)
            plan_index(args.index, sources_from_args(args), weights=weights)
        return _extract_and_commit(args)


def _extraction_device(args: argparse.Namespace) -> str:
    """Where the extraction computes: the ``MODEL.DEVICE`` of the plan (or, on a machine that may
    start before machine 0 wrote it, of ``build``'s config), so that CPU processes on a machine
    with a GPU launch with gloo; None (CUDA when present) when neither is known."""
    if os.path.isfile(os.path.join(args.index, PLAN)):
        return config_of(read_plan(args.index)).MODEL.DEVICE
    if args.command == "build":
        return load_config(args.config_file, args.opts).MODEL.DEVICE
    return None


def _extract_and_commit(args: argparse.Namespace) -> dict:
    launch(
        _extract_worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args.index, args.batch_size, args.num_workers, args.threads, args.export, args.quiet),
        device=_extraction_device(args),
    )
    if args.machine_rank != 0:
        return {}
    manifest = commit_index(args.index)
    boxes = sum(s["num_boxes"] for s in manifest["shards"])
    print(f"index {args.index}: {len(manifest['shards'])} shards, {boxes} boxes")
    _print_backend(manifest)
    return manifest


def _print_backend(manifest: dict) -> None:
    ann = manifest["ann"]
    if not ann:
        print("back end: exact")
        return
    reduced = f"+{ann['reduce']}" if ann.get("reduce") else ""
    print(
        f"back end: {ann['backend']}{reduced}, recall@10 {ann['recall@10']:.3f}, recall@100 "
        f"{ann['recall@100']:.3f} against exact, {ann['bytes_per_box']:.1f} bytes per box"
    )


def run_train(args: argparse.Namespace) -> dict:
    """``train``: (re)build the index's search back end on its shards, nothing re-extracted."""
    if not os.path.isdir(args.index):
        raise FileNotFoundError(f"--index {args.index} does not exist")
    with _locked(args.index, existing=True):
        manifest = set_backend(args.index, args.backend, _ann_params(args.ann_param, args))
    _print_backend(manifest)
    return manifest


def run_query(args: argparse.Namespace) -> List[Hit]:
    check_picture_path(args.out + ".png")
    weights = _weights_override(args.opts)
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
        predictor = (
            exported_predictor(
                config_of(gallery.manifest), args.export, gallery.manifest["weights_sha256"]
            )
            if args.export
            else index_predictor(gallery.manifest, weights)
        )
        embedding = predictor.embed_query(args.query, args.box)
        meta.update(image=args.query, box=list(args.box))
    searcher = load_searcher(gallery, args.backend)
    hits = search_index(gallery, searcher, embedding, args.topk)
    meta["backend"] = searcher.name
    write_hits(hits, args.out + ".json", args.out + ".csv", meta)
    print(format_hits(hits))
    print(f"{len(hits)} hits of {len(gallery)} boxes, {searcher.name} search")
    if args.query:
        render(args.query, args.box, hits, args.out + ".png")
    print(f"saved {args.out}.json, {args.out}.csv" + (f", {args.out}.png" if args.query else ""))
    return hits


def main(argv: Sequence[str] = None):
    args = build_parser().parse_args(argv)
    setup_logger(name="stl_search", distributed_rank=comm.get_rank(), abbrev_name="stl")
    if args.command == "query":
        return run_query(args)
    if args.command == "train":
        return run_train(args)
    if args.command in ("search", "calibrate"):
        return (run_search if args.command == "search" else run_calibrate)(args)
    return run_build(args)


if __name__ == "__main__":
    main()
