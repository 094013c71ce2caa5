"""``python -m stl_search.index search``: many queries from one load, answered as sightings.

    python -m stl_search.index search --index DIR --query IMAGE --box X1 Y1 X2 Y2 [--box ...]
    python -m stl_search.index search --index DIR --queries LIST.txt
    python -m stl_search.index search --index DIR --query-embedding FILE.npy

``LIST.txt`` holds one query per line, ``IMAGE X1 Y1 X2 Y2`` (blank lines and ``#`` comments
skipped). Boxes of one image are embedded in one forward. Per query it prints the back end, the
search time, the threshold and the sightings (or "no match above threshold"), and writes
``PREFIX.json`` (everything), ``PREFIX_hits.csv``, ``PREFIX_sightings.csv``,
``PREFIX_timeline.png`` and ``PREFIX.png`` (the result grid); with several queries ``PREFIX``
is ``OUT_q1``, ``OUT_q2``, ... ``--save-clips DIR`` also writes each video sighting shown as a
short MP4 with its matched boxes drawn (:mod:`~stl_search.index.clips`).
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from typing import List, Tuple

import numpy as np

from ..utils.cli import HelpFormatter
from ..utils.io import atomic_open, atomic_write_json
from .arguments import non_negative_float, non_negative_int, positive_int
from .backends import BACKENDS
from .clips import save_clips
from .grid import draw_result_grid, save_crops
from .render import check_picture_path
from .session import Filters, QueryResult, QuerySession
from .timeline import draw_timeline

__all__ = ["add_search_parser", "run_search", "read_query_list", "write_result", "format_result"]


def add_search_parser(sub) -> None:
    """Register ``search`` on the index command's subparsers."""
    p = sub.add_parser(
        "search",
        help="several queries from one load: sightings and hits",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--index", required=True, metavar="DIR", help="the index's folder")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--query", metavar="IMAGE", help="image holding the query person(s)")
    group.add_argument("--queries", metavar="FILE", help="lines of IMAGE X1 Y1 X2 Y2")
    group.add_argument("--query-embedding", metavar="FILE.npy", help="a (D,) or (Q, D) array")
    p.add_argument(
        "--box",
        nargs=4,
        type=float,
        action="append",
        metavar=("X1", "Y1", "X2", "Y2"),
        help="a query box in --query (repeat for several queries)",
    )
    p.add_argument("--topk", type=positive_int, default=10, help="hits (boxes) and sightings shown")
    p.add_argument(
        "--candidates", type=positive_int, default=1000, help="top boxes grouped into sightings"
    )
    p.add_argument(
        "--max-gap",
        type=non_negative_int,
        default=2,
        help="missed samples bridged within one sighting",
    )
    p.add_argument(
        "--min-similarity",
        type=float,
        help="the match threshold (default: the index's calibration, if any)",
    )
    p.add_argument("--source", action="append", default=[], metavar="GLOB", help="video/folder")
    p.add_argument("--camera", action="append", default=[], help="camera name (repeatable)")
    p.add_argument("--time-range", nargs=2, type=float, metavar=("START", "END"), help="seconds")
    p.add_argument("--backend", choices=BACKENDS, help="default: the index's own")
    p.add_argument(
        "--out",
        default="search_result",
        metavar="PREFIX",
        help="PREFIX.json, _hits.csv, _sightings.csv, .png and _timeline.png",
    )
    p.add_argument("--save-crops", metavar="DIR", help="also save each sighting's best crop")
    p.add_argument(
        "--save-clips",
        metavar="DIR",
        help="also write each video sighting shown (--topk) as an MP4 clip, matched boxes drawn",
    )
    p.add_argument(
        "--clip-margin",
        type=non_negative_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds of video kept before and after each sighting's clip",
    )
    p.add_argument("--quiet", action="store_true", help="print only the sightings")


def read_query_list(path: str) -> List[Tuple[str, List[float]]]:
    """``(image, box)`` per line of ``path``; raises naming the file and line."""
    queries = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.rsplit(None, 4)
            try:
                if len(parts) != 5:
                    raise ValueError
                queries.append((parts[0], [float(v) for v in parts[1:]]))
            except ValueError:
                raise ValueError(
                    f"{path}:{number}: expected IMAGE X1 Y1 X2 Y2, got {text!r}"
                ) from None
    if not queries:
        raise ValueError(f"{path}: no query line")
    return queries


def _embeddings(session: QuerySession, args) -> List[Tuple[np.ndarray, dict]]:
    if args.query_embedding:
        try:
            array = np.load(args.query_embedding, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"--query-embedding {args.query_embedding}: {e}") from None
        array = array.reshape(1, -1) if array.ndim == 1 else array
        return [(row, {"embedding": args.query_embedding, "row": i}) for i, row in enumerate(array)]
    if args.query:
        if not args.box:
            raise ValueError("--query needs at least one --box X1 Y1 X2 Y2")
        queries = [(args.query, list(box)) for box in args.box]
    else:
        queries = read_query_list(args.queries)
    out = [None] * len(queries)
    for image in dict.fromkeys(q[0] for q in queries):  # one forward per image
        rows = [i for i, q in enumerate(queries) if q[0] == image]
        for i, emb in zip(rows, session.embed(image, [queries[i][1] for i in rows])):
            out[i] = (emb, {"image": image, "box": queries[i][1]})
    return out


def write_result(result: QueryResult, prefix: str) -> List[str]:
    """The JSON, the two CSVs and the timeline of ``result``; returns the paths written."""
    atomic_write_json(result.as_dict(), prefix + ".json")
    hits = result.hit_rows()
    hit_fields = [
        "rank",
        "similarity",
        "false_match_rate",
        "detection_score",
        "file_name",
        "frame_index",
        "timestamp",
        "box_id",
    ]
    sighting_fields = [
        "rank",
        "source",
        "camera",
        "kind",
        "start",
        "end",
        "num_frames",
        "best_similarity",
        "best_file",
        "best_frame_index",
        "best_timestamp",
        "best_box_id",
    ]
    sightings = result.as_dict()["sightings"]
    for path, rows, fields in (
        (prefix + "_hits.csv", hits, hit_fields),
        (prefix + "_sightings.csv", sightings, sighting_fields),
    ):
        text = io.StringIO()
        writer = csv.writer(text)
        box_key = "box" if rows is hits else "best_box"
        writer.writerow(fields + ["x1", "y1", "x2", "y2"])
        for row in rows:
            writer.writerow([row.get(f, "") for f in fields] + row[box_key])
        with atomic_open(path, "w") as f:
            f.write(text.getvalue())
    title = (
        f"{len(result.sightings)} sightings"
        + (f", threshold {result.threshold:.3f}" if result.threshold is not None else "")
        + (" (no match above threshold)" if result.no_match else "")
    )
    draw_timeline(result.sightings, prefix + "_timeline.png", title, result.threshold)
    return [prefix + s for s in (".json", "_hits.csv", "_sightings.csv", "_timeline.png")]


def format_result(result: QueryResult, topk: int) -> str:
    """The sightings as a table (or "no match above threshold") under a header line."""
    head = f"back end {result.backend}, search {1000 * result.seconds:.1f} ms, threshold " + (
        f"{result.threshold:.4f} ({result.threshold_source})"
        if result.threshold is not None
        else "none (every candidate counts; run `index calibrate` or pass --min-similarity)"
    )
    if result.no_match:
        best = result.hits[0].similarity if result.hits else float("nan")
        return head + f"\nno match above threshold (best similarity {best:.4f})"
    lines = [head, f"{'#':>3}  {'best sim':>8}  {'frames':>6}  {'interval':<21}  source"]
    for rank, s in enumerate(result.sightings[:topk], 1):
        unit = "s" if s.kind == "video" else "#"
        interval = (
            f"{s.start:.2f}-{s.end:.2f} {unit}" if unit == "s" else f"{s.start:.0f}-{s.end:.0f} #"
        )
        where = s.source + (f" [{s.camera}]" if s.kind == "images" else "")
        lines.append(
            f"{rank:>3}  {s.best_similarity:>8.4f}  {s.num_frames:>6}  {interval:<21}  {where}"
        )
    if len(result.sightings) > topk:
        lines.append(f"... {len(result.sightings) - topk} more sightings in the JSON")
    return "\n".join(lines)


def run_search(args: argparse.Namespace, session: QuerySession = None) -> List[QueryResult]:
    """Answer every query of ``args`` from one loaded session."""
    check_picture_path(args.out + ".png")
    if session is None:
        session = QuerySession(args.index, args.backend)
        print(
            f"loaded {args.index}: {len(session.gallery)} boxes, back end {session.backend}, "
            f"in {session.load_seconds:.2f} s"
        )
    start = time.perf_counter()
    queries = _embeddings(session, args)
    if not args.quiet and not args.query_embedding:
        print(f"embedded {len(queries)} queries in {time.perf_counter() - start:.2f} s")
    filters = Filters(args.source, args.camera, args.time_range)
    results = []
    for number, (embedding, meta) in enumerate(queries, 1):
        result = session.search(
            embedding,
            topk=args.topk,
            candidates=args.candidates,
            max_gap=args.max_gap,
            min_similarity=args.min_similarity,
            filters=filters,
            meta=meta,
        )
        prefix = args.out if len(queries) == 1 else f"{args.out}_q{number}"
        written = write_result(result, prefix)
        if meta.get("image"):
            draw_result_grid(result, meta["image"], meta["box"], prefix + ".png")
            written.append(prefix + ".png")
        if args.save_crops:
            written += save_crops(result, args.save_crops, f"q{number}")
        if args.save_clips:
            written += save_clips(
                result.sightings,
                session.gallery,
                args.save_clips,
                f"q{number}",
                args.clip_margin,
                args.topk,
            )
        described = f"{meta['image']} box {meta['box']}" if meta.get("image") else "embedding"
        print(f"\nquery {number}: {described}")
        print(format_result(result, args.topk))
        if not args.quiet:
            print("saved " + ", ".join(written))
        results.append(result)
    return results
