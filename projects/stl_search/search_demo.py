#!/usr/bin/env python
"""The demo's search step: one query against the gallery index, checked against the ground
truth, then the same person found in a short video as sightings.

    python projects/stl_search/search_demo.py --index OUT/3_gallery_index --out OUT/search_demo
        [--query-index 0] [--query-split synthetic_query]

0. Calibrates the image index on the query split (``index calibrate --target-fpr``, once):
   the threshold the searches below use and the TPR at FPR 1e-2 and 1e-3.
1. States the query (image, box, identity), searches the image index from one loaded session,
   marks each of the top hits green when it overlaps (IoU >= 0.5) an annotated box of the
   query's identity and red otherwise, prints the rank of the first correct hit, and saves
   ``OUT.png`` (the result grid), ``OUT.json`` and the CSVs.
2. Writes ``OUT_video.avi``: the gallery frames of the camera (other than the query's) where the
   query's identity is annotated most often, each frame held 0.5 s at 10 fps; indexes it
   (``index build --video-input ... --sample-fps 4``, the image index's config and weights),
   copies the calibration (same weights), runs ``index search`` on it, and prints its
   sightings beside the intervals in which the identity is annotated; each sighting's clip,
   boxes drawn, goes to ``OUT_video_clips/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import Counter
from typing import List, Sequence

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, pairwise_iou

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import stl_search  # noqa: E402,F401  (registers the synthetic data set)
from stl_search.index.calibration import CALIBRATION_FILE, TooFewPairs  # noqa: E402
from stl_search.index.cli import main as index_command  # noqa: E402
from stl_search.index.grid import draw_result_grid  # noqa: E402
from stl_search.index.model import config_of  # noqa: E402
from stl_search.index.search_command import write_result  # noqa: E402
from stl_search.index.session import QuerySession  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402

HOLD_SECONDS, VIDEO_FPS = 0.5, 10.0


def is_identity(box, record: dict, identity: int) -> bool:
    """Whether ``box`` overlaps (IoU >= 0.5) an annotated box of ``identity`` in ``record``."""
    boxes = [a["bbox"] for a in record.get("annotations", []) if a["identity"] == identity]
    if not boxes:
        return False
    iou = pairwise_iou(
        Boxes(torch.as_tensor(np.asarray(box, np.float32).reshape(1, 4))),
        Boxes(torch.as_tensor(np.asarray(boxes, np.float32))),
    )
    return bool(iou.max() >= 0.5)


def image_search(index: str, query: dict, gallery: List[dict], out: str, topk: int) -> None:
    by_name = {os.path.basename(r["file_name"]): r for r in gallery}
    session = QuerySession(index)
    print(
        f"[search] query: {query['image_id']} box {[round(v, 1) for v in query['query_box']]}, "
        f"identity {query['identity']} (camera {query['camera_id']})"
    )
    result = session.search(
        session.embed(query["file_name"], query["query_box"])[0],
        topk=topk,
        meta={"image": query["file_name"], "box": list(query["query_box"])},
    )
    marks = [
        is_identity(h.box, by_name.get(os.path.basename(h.file_name), {}), query["identity"])
        for h in result.hits
    ]
    written = write_result(result, out)
    draw_result_grid(
        result, query["file_name"], query["query_box"], out + ".png", marks, hits_only=True
    )
    print(format_hits_marked(result, marks))
    first = next((r for r, m in enumerate(marks, 1) if m), None)
    total = sum(
        is_identity(a["bbox"], r, query["identity"])
        for r in gallery
        for a in r["annotations"]
        if r["image_id"] != query["image_id"]
    )
    print(
        f"[search] first correct hit at rank {first if first else f'> {topk}'}; "
        f"{sum(marks)} of the top {len(marks)} are identity {query['identity']} "
        f"({total} annotated in the gallery); saved {out}.png, " + ", ".join(written)
    )


def format_hits_marked(result, marks: Sequence[bool]) -> str:
    lines = [f"{'rank':>4}  {'similarity':>10}  right  file"]
    for rank, (hit, mark) in enumerate(zip(result.hits, marks), 1):
        name = os.path.basename(hit.file_name)
        lines.append(f"{rank:>4}  {hit.similarity:>10.4f}  {'yes' if mark else 'no ':>5}  {name}")
    return "\n".join(lines)


def write_video(path: str, records: List[dict]) -> None:
    first = cv2.imread(records[0]["file_name"])
    size = (first.shape[1], first.shape[0])
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, size)
    for record in records:
        frame = cv2.resize(cv2.imread(record["file_name"]), size)
        for _ in range(int(HOLD_SECONDS * VIDEO_FPS)):
            writer.write(frame)
    writer.release()


def video_search(index: str, query: dict, gallery: List[dict], out: str) -> None:
    counts = Counter(
        r["camera_id"]
        for r in gallery
        if r["camera_id"] != query["camera_id"]
        and any(a["identity"] == query["identity"] for a in r["annotations"])
    )
    if not counts:
        print(f"[search] identity {query['identity']} is on no other camera: no video")
        return
    camera = counts.most_common(1)[0][0]
    frames = sorted((r for r in gallery if r["camera_id"] == camera), key=lambda r: r["image_id"])
    video = out + "_video.avi"
    write_video(video, frames)
    shown = [
        i
        for i, r in enumerate(frames)
        if any(a["identity"] == query["identity"] for a in r["annotations"])
    ]
    truth = ", ".join(f"{i * HOLD_SECONDS:.1f}-{(i + 1) * HOLD_SECONDS:.1f} s" for i in shown)
    print(
        f"[search] {video}: camera {camera}'s {len(frames)} gallery frames, "
        f"{HOLD_SECONDS} s each; identity {query['identity']} annotated at {truth}"
    )
    cfg = config_of(QuerySession(index, verify=False).gallery.manifest)
    video_index = out + "_video_index"
    py = sys.executable
    if not os.path.isfile(os.path.join(video_index, "manifest.json")):
        config = out + "_config.yaml"
        with open(config, "w") as f:
            f.write(cfg.dump())
        subprocess.run(
            [
                py,
                "-m",
                "stl_search.index",
                "build",
                "--index",
                video_index,
                "--config-file",
                config,
                "--video-input",
                video,
                "--sample-fps",
                "4",
            ],
            check=True,
            cwd=REPO,
        )
    calibration = os.path.join(index, CALIBRATION_FILE)
    if os.path.isfile(calibration):  # a calibration holds for any index of the same weights
        shutil.copyfile(calibration, os.path.join(video_index, CALIBRATION_FILE))
    box = " ".join(f"{v:.1f}" for v in query["query_box"])
    subprocess.run(
        [
            py,
            "-m",
            "stl_search.index",
            "search",
            "--index",
            video_index,
            "--query",
            query["file_name"],
            "--box",
            *box.split(),
            "--topk",
            "5",
            "--out",
            out + "_video",
            "--save-clips",
            out + "_video_clips",
        ],
        check=True,
        cwd=REPO,
    )


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--index", required=True, metavar="DIR", help="the image gallery index")
    parser.add_argument(
        "--out", required=True, metavar="PREFIX", help="PREFIX.png / .json / .csv, PREFIX_video*"
    )
    parser.add_argument(
        "--query-split", default="synthetic_query", help="registered query split (ground truth)"
    )
    parser.add_argument("--query-index", type=int, default=0, help="which query of the split")
    parser.add_argument("--topk", type=int, default=10, help="hits shown and marked")
    parser.add_argument("--target-fpr", type=float, default=1e-3, help="for the calibration")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.index, CALIBRATION_FILE)):
        try:
            index_command(
                ["calibrate", "--index", args.index, "--dataset", args.query_split]
                + ["--target-fpr", str(args.target_fpr)]
            )
        except TooFewPairs as e:  # a tiny data set (the GPU check's dry run): rank, no threshold
            print(f"[search demo] not calibrated: {e}; the hits below have no threshold")
    query = DatasetCatalog.get(args.query_split)[args.query_index]
    gallery = DatasetCatalog.get(MetadataCatalog.get(args.query_split).gallery_name)
    image_search(args.index, query, gallery, args.out, args.topk)
    video_search(args.index, query, gallery, args.out)


if __name__ == "__main__":
    main()
