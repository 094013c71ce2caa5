#!/usr/bin/env python
"""The paper's Table 2 (effect of STL and MRFP) on a chosen data set, printed as one table.

    python projects/stl_search/run_table2.py --dataset synthetic [--seeds 0 1 2]
    python projects/stl_search/run_table2.py --dataset prw \
        --stl-weights output/stl_prw/stl_init.pth [--imagenet-weights r50_ibn_a_d2.pth] \
        [--num-gpus 8]

Rows: the config files of the data set's folder (``configs/PRW``, ``configs/CUHK-SYSU``,
``configs/synthetic``) whose first line names a Table 2 row, ``# Table 2, row N, "<name>"``; each
carries its own ``MODEL.MRFP.ENABLED``, and ``MODEL.WEIGHTS`` comes from ``--stl-weights`` or
``--imagenet-weights`` (a file made by ``python -m stl_search.tools.convert_imagenet``; the
ImageNet rows run only with it) or is empty (random init). Each row is trained and then evaluated
by train_net.py; the table is read back from each row's ``eval_metrics.json`` and written to
``<output>/table2.md``. For the synthetic set, the STL weights are pretrained first when
``--stl-weights`` is not given. Several seeds give mean ± std.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from stl_search.utils.cli import HelpFormatter  # noqa: E402
from stl_search.utils.io import atomic_open  # noqa: E402

# Per data set: the folder of its Table 2 row configs, and its STL pretraining config.
DATASETS = {
    "synthetic": ("configs/synthetic", "configs/STL/synthetic.yaml"),
    "prw": ("configs/PRW", "configs/STL/PRW.yaml"),
    "cuhk_sysu": ("configs/CUHK-SYSU", "configs/STL/CUHK-SYSU.yaml"),
}
METRICS = (("search", "mAP"), ("search", "top1"), ("detection", "AP"), ("detection", "recall"))
# The first line of a row config: its number and name; the name says the initialisation.
_ROW_LINE = re.compile(
    r'^# Table 2, row (\d+), "(Baseline \((random init|ImageNet|STL)\)(?: \+ MRFP)?)"'
)


class Row(NamedTuple):
    """One Table 2 row: its name, its config file (relative to the repository) and weights."""

    name: str
    config: str
    weights: str


def row_configs(config_dir: str) -> List[Tuple[int, str, str, str]]:
    """``(number, name, initialisation, config)`` of each row config in ``config_dir``, by row."""
    found = []
    for path in sorted(glob.glob(os.path.join(REPO, config_dir, "*.yaml"))):
        with open(path) as f:
            match = _ROW_LINE.match(f.readline())
        if match:
            config = os.path.relpath(path, REPO)
            found.append((int(match.group(1)), match.group(2), match.group(3), config))
    numbers = [number for number, *_ in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{config_dir}: two configs claim the same Table 2 row: {found}")
    return sorted(found)


def table_rows(dataset: str, stl_weights: str, imagenet_weights: Optional[str]) -> List[Row]:
    """The rows of ``dataset`` that can run: the ImageNet ones only with ``imagenet_weights``."""
    weights = {"random init": "", "STL": stl_weights, "ImageNet": imagenet_weights}
    return [
        Row(name, config, weights[init])
        for _, name, init, config in row_configs(DATASETS[dataset][0])
        if init != "ImageNet" or imagenet_weights
    ]


def row_slug(name: str) -> str:
    """Folder-name form of a row name: ``Baseline (STL) + MRFP`` -> ``stl_plus_mrfp``."""
    return (
        name.lower()
        .replace("baseline ", "")
        .replace(" ", "_")
        .replace("(", "")
        .replace(")", "")
        .replace("+", "plus")
    )


def _run(cmd: Sequence[str]) -> None:
    print("[table2]", " ".join(cmd), flush=True)
    if subprocess.run(list(cmd), cwd=REPO).returncode != 0:
        sys.exit(f"[table2] failed: {' '.join(cmd)}")


def run_row(
    row: Row,
    seed: int,
    out_dir: str,
    launch_args: List[str],
    extra: List[str],
) -> Dict[str, dict]:
    """Train and evaluate one row (skipped if its eval_metrics.json exists); return its metrics."""
    metrics_path = os.path.join(out_dir, "eval_metrics.json")
    if not os.path.exists(metrics_path):  # training ends with the evaluation, which writes it
        _run(
            [
                sys.executable,
                "train_net.py",
                "--config-file",
                row.config,
                "--resume",
                *launch_args,
                "MODEL.WEIGHTS",
                row.weights,
                "OUTPUT_DIR",
                out_dir,
                "SEED",
                str(seed),
                *extra,
            ]
        )
    with open(metrics_path) as f:
        return json.load(f)["metrics"]


def format_table(results: Dict[str, List[Dict[str, dict]]]) -> str:
    """Markdown table: mean (± std over seeds when more than one) of each metric per row."""
    header = (
        "| method | mAP (%) | top-1 (%) | det. AP (%) | det. recall (%) |\n|---|---|---|---|---|"
    )
    lines = [header]
    for name, runs in results.items():
        cells = []
        for task, metric in METRICS:
            values = [run[task][metric] for run in runs]
            mean = statistics.fmean(values)
            cells.append(
                f"{mean:.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--dataset", choices=sorted(DATASETS), default="synthetic", help="whose Table 2 to run"
    )
    parser.add_argument(
        "--stl-weights", default="", help="STL export (stl_init.pth) of the data set"
    )
    parser.add_argument(
        "--imagenet-weights", default="", help="converted ImageNet weights (optional)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="a training run per row and seed"
    )
    parser.add_argument("--output", default=None, help="default: output/table2_DATASET")
    parser.add_argument(
        "--num-gpus", type=int, default=1, help="processes per run (train_net.py --num-gpus)"
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        metavar="SLUG",
        help="run only these rows, by folder name (e.g. random_init stl stl_plus_mrfp "
        "random_init_plus_mrfp imagenet imagenet_plus_mrfp)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every row")
    args = parser.parse_args(argv)
    config_dir, stl_config = DATASETS[args.dataset]
    out = os.path.abspath(args.output or os.path.join(REPO, "output", f"table2_{args.dataset}"))
    launch_args = ["--num-gpus", str(args.num_gpus)]

    imagenet = args.imagenet_weights
    if imagenet and not any(init == "ImageNet" for *_, init, _ in row_configs(config_dir)):
        parser.error(f"--imagenet-weights: {config_dir} has no ImageNet row")
    stl_weights = args.stl_weights
    if not stl_weights:
        if args.dataset != "synthetic":
            parser.error(
                "--stl-weights is required for real data sets (see projects/stl_search/README.md)"
            )
        stl_weights = os.path.join(out, "stl_pretrain", "stl_init.pth")
        if not os.path.exists(stl_weights):
            _run(
                [
                    sys.executable,
                    "projects/stl_search/pretrain_reid.py",
                    "--config-file",
                    stl_config,
                    "--resume",
                    "OUTPUT_DIR",
                    os.path.dirname(stl_weights),
                    "STL.EXPORT_NAME",
                    "stl_init.pth",
                ]
            )

    rows = {row_slug(row.name): row for row in table_rows(args.dataset, stl_weights, imagenet)}
    if args.rows:
        unknown = set(args.rows) - rows.keys()
        if unknown:
            parser.error(f"--rows: unknown {sorted(unknown)}; choose from {list(rows)}")
        rows = {slug: row for slug, row in rows.items() if slug in args.rows}
    results: Dict[str, List[Dict[str, dict]]] = {}
    for slug, row in rows.items():
        results[row.name] = [
            run_row(
                row,
                seed,
                os.path.join(out, f"{slug}_seed{seed}"),
                launch_args,
                args.opts,
            )
            for seed in args.seeds
        ]
    table = format_table(results)
    with atomic_open(os.path.join(out, "table2.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"[table2] written to {os.path.join(out, 'table2.md')}")
    return table


if __name__ == "__main__":
    main()
