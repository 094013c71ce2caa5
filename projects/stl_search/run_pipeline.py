#!/usr/bin/env python
"""The whole STL pipeline on the built-in synthetic long-tail data set, on the CPU.

    python projects/stl_search/run_pipeline.py [--output output/stl_pipeline] [--force]
                                               [--data-format json] [--device cuda]
                                               [--num-workers N] [--opts KEY VALUE ...]

Steps (each a Detectron2-style command with its own log, progress and ETA):
  0. generate the synthetic data set (first time only) and plot its long tail;
  1. STL step 1: Re-ID pretraining of ResNet-IBN-a on person crops
     (projects/stl_search/pretrain_reid.py);
  2. STL step 2: export of the pretrained backbone as the person-search initialisation;
     then Fig. 6: the base nets' feature maps on a synthetic frame, random vs STL initialisation
     (``stl_search.tools.visualize_features``; no training);
  3. person-search fine-tuning, STL + MRFP, then evaluation on the synthetic gallery and queries
     (train_net.py; writes eval_metrics.json);
  4. a gallery index of the synthetic gallery (``python -m stl_search.index build``);
  5. one query against that index: its top hits marked right or wrong by the ground truth, the
     rank of the first right one, the result grid; then a short video of another camera's
     gallery frames indexed and searched for the same person: its sightings
     (projects/stl_search/search_demo.py).
A finished step is skipped when run again (and an unfinished training step resumes). ``--force``
reruns every step from scratch: the training steps start afresh (``--overwrite`` instead of
``--resume``) and the index step rebuilds its index. The last lines name the output folder;
the printed table is read back from the evaluation's JSON file.
``--data-format json`` converts the synthetic set to the person-search JSON format
(docs/own-data.md; ``OUTPUT/own_synthetic.json``) after step 0 and runs steps 1-3 on it, as on
one's own data (``DATASETS.PERSON_SEARCH_JSON``; the same dicts as the PRW-format loader).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import List, Sequence

import stl_search  # noqa: F401  (first: registers the synthetic data set, quiets Detectron2)

# isort: split
from detectron2.data import DatasetCatalog

from stl_search.data.datasets.builtin import data_root
from stl_search.utils.cli import HelpFormatter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STL_CONFIG = os.path.join(REPO, "configs", "STL", "synthetic.yaml")
PS_CONFIG = os.path.join(REPO, "configs", "synthetic", "person_search.yaml")


def run(name: str, cmd: Sequence[str], done: str, force: bool) -> None:
    """Run ``cmd`` unless ``done`` exists (and not ``force``); fail loudly with the step's name."""
    if os.path.exists(done) and not force:
        print(f"[pipeline] {name}: done already ({os.path.relpath(done, REPO)})", flush=True)
        return
    print(f"[pipeline] {name}: {' '.join(cmd)}", flush=True)
    start = time.time()
    proc = subprocess.run(list(cmd), cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"[pipeline] {name} failed with exit code {proc.returncode}")
    if not os.path.exists(done):
        sys.exit(f"[pipeline] {name} finished but did not write {done}")
    print(f"[pipeline] {name}: {time.time() - start:.0f} s", flush=True)


def summary_rows(metrics: dict) -> List[tuple]:
    """(label, value) rows of the headline numbers, read from the evaluator's metrics dict."""
    search = metrics["search"]
    detection = metrics["detection"]
    return [
        ("search mAP (%)", search["mAP"]),
        ("search top-1 (%)", search["top1"]),
        ("detection AP (%)", detection["AP"]),
        ("detection recall (%)", detection["recall"]),
    ]


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--output", help="default: output/stl_pipeline (output/stl_pipeline_json with json data)"
    )
    parser.add_argument("--force", action="store_true", help="rerun every step")
    parser.add_argument(
        "--num-workers", type=int, default=None, help="DATALOADER.NUM_WORKERS override"
    )
    parser.add_argument(
        "--data-format",
        choices=("prw", "json"),
        default="prw",
        help="json: train and evaluate from the synthetic set as a person-search JSON file",
    )
    parser.add_argument("--device", default=None, help="MODEL.DEVICE override (e.g. cuda)")
    parser.add_argument(
        "--opts",
        nargs="*",
        default=[],
        help="KEY VALUE ... config overrides of the training steps and the index build",
    )
    args = parser.parse_args(argv)
    suffix = "_json" if args.data_format == "json" else ""
    out = os.path.abspath(args.output or os.path.join(REPO, "output", "stl_pipeline" + suffix))
    os.makedirs(out, exist_ok=True)
    py = sys.executable
    extra = (
        ["DATALOADER.NUM_WORKERS", str(args.num_workers)] if args.num_workers is not None else []
    )
    device = ["MODEL.DEVICE", args.device] if args.device else []
    extra += device + list(args.opts)
    # An unfinished training step continues; --force starts it afresh.
    training_start = "--overwrite" if args.force else "--resume"
    t0 = time.time()

    pretrain_dir = os.path.join(out, "1_stl_pretrain")
    init = os.path.join(pretrain_dir, "stl_init.pth")
    search_dir = os.path.join(out, "2_person_search")

    run(
        "0/5 synthetic data + long-tail plot",
        [
            py,
            "-m",
            "stl_search.data.stats",
            "synthetic_train",
            "--out",
            os.path.join(out, "long_tail.png"),
        ],
        os.path.join(out, "long_tail.png"),
        args.force,
    )
    if args.data_format == "json":
        extra += json_data_options(out, args.force)
    run(
        "1-2/5 STL Re-ID pretraining + export",
        [
            py,
            "projects/stl_search/pretrain_reid.py",
            "--config-file",
            STL_CONFIG,
            training_start,
            "OUTPUT_DIR",
            pretrain_dir,
            "STL.EXPORT_NAME",
            "stl_init.pth",
            *extra,
        ],
        init,
        args.force,
    )
    fig6 = os.path.join(out, "feature_maps_random_vs_stl.png")
    run(
        "Fig. 6 feature maps, random vs STL init",
        [
            py,
            "-m",
            "stl_search.tools.visualize_features",
            "--config-file",
            PS_CONFIG,
            "--weights",
            "random",
            init,
            "--labels",
            "random init",
            "STL",
            "--image",
            DatasetCatalog.get("synthetic_query")[0]["file_name"],
            "--out",
            fig6,
        ],
        fig6,
        args.force,
    )
    run(
        "3/5 person-search fine-tuning (STL + MRFP) and evaluation",
        [
            py,
            "train_net.py",
            "--config-file",
            PS_CONFIG,
            training_start,
            "MODEL.WEIGHTS",
            init,
            "MODEL.MRFP.ENABLED",
            "True",
            "OUTPUT_DIR",
            search_dir,
            *extra,
        ],
        os.path.join(search_dir, "eval_metrics.json"),
        args.force,
    )
    metrics_path = os.path.join(search_dir, "eval_metrics.json")
    with open(metrics_path) as f:
        metrics = json.load(f)["metrics"]

    index_dir = os.path.join(out, "3_gallery_index")
    query = _query_and_gallery(os.path.join(out, "gallery_demo"))
    if args.force and os.path.isdir(index_dir):
        shutil.rmtree(index_dir)  # the pipeline's own index: `index build` makes a new one only
    run(
        "4/5 gallery index of the synthetic gallery",
        [
            py,
            "-m",
            "stl_search.index",
            "build",
            "--index",
            index_dir,
            "--config-file",
            PS_CONFIG,
            "--input",
            query["gallery_folder"],
            "MODEL.WEIGHTS",
            os.path.join(search_dir, "model_final.pth"),
            "MODEL.MRFP.ENABLED",
            "True",
            *device,
            *args.opts,
        ],
        os.path.join(index_dir, "manifest.json"),
        args.force,
    )
    demo = os.path.join(out, "search_demo")
    run(
        "5/5 query the index (ground truth marked), then a video of the same gallery",
        [
            py,
            os.path.join(REPO, "projects", "stl_search", "search_demo.py"),
            "--index",
            index_dir,
            "--out",
            demo,
        ],
        demo + "_video.json",
        args.force,
    )

    print("\n[pipeline] STL + MRFP on the synthetic data set")
    for label, value in summary_rows(metrics):
        print(f"  {label:<22} {value:6.2f}")
    print(f"[pipeline] total {time.time() - t0:.0f} s")
    print(f"[pipeline] metrics: {metrics_path}")
    print(f"[pipeline] Fig. 6 feature maps: {fig6}")
    print(f"[pipeline] output folder: {out}")


def json_data_options(out: str, force: bool) -> List[str]:
    """Convert the generated synthetic set (PRW format) to ``out/own_synthetic.json`` and return
    the config overrides that register it and train and evaluate on its splits."""
    json_file = os.path.join(out, "own_synthetic.json")
    synthetic_root = os.path.join(data_root(), "synthetic_prw")  # the commands run in REPO
    run(
        "0/5 synthetic data as person-search JSON",
        [sys.executable, "-m", "stl_search.data.convert", "prw", synthetic_root, json_file],
        json_file,
        force,
    )
    name = "own_synthetic"
    return [
        "DATASETS.PERSON_SEARCH_JSON",
        f"('{json_file}',)",
        "DATASETS.TRAIN",
        f"('{name}_train',)",
        "DATASETS.TEST",
        f"('{name}_gallery',)",
        "DATASETS.QUERY",
        f"('{name}_query',)",
    ]


def _query_and_gallery(folder: str) -> dict:
    """The first synthetic query, and ``folder`` filled with links to every gallery frame but the
    query's own (the evaluation's PRW "all" gallery of that query)."""
    query = dict(DatasetCatalog.get("synthetic_query")[0])
    os.makedirs(folder, exist_ok=True)
    for record in DatasetCatalog.get("synthetic_gallery"):
        link = os.path.join(folder, os.path.basename(record["file_name"]))
        if record["image_id"] != query["image_id"] and not os.path.exists(link):
            os.symlink(record["file_name"], link)
    query["gallery_folder"] = folder
    return query


if __name__ == "__main__":
    main()
