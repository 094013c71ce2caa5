"""A synthetic long-tail person-search data set, written in the PRW format.

The generator's command line::

    python -m stl_search.data.datasets.synthetic --out datasets/synthetic_prw [--seed 0] \\
        [--preset tiny] [--num-train-frames N ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from typing import Optional, Sequence

from ....utils.cli import HelpFormatter
from .generate import COMPLETE_MARKER, PRESETS, SyntheticSpec, ensure_generated


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.data.datasets.synthetic",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, help="output directory (created; must be empty or absent)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generator")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="the sizes to start from (tiny: the tests' set); the options below override them",
    )
    for field in dataclasses.fields(SyntheticSpec):
        if field.name in ("seed",) or field.type not in ("int", "float"):
            continue
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if field.type == "int" else float,
            default=None,
            help=f"override the preset's {field.name}",
        )
    args = parser.parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(SyntheticSpec)
        if hasattr(args, f.name) and getattr(args, f.name) is not None and f.name != "seed"
    }
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.path.exists(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out}: not empty")
    ensure_generated(args.out, PRESETS[args.preset], seed=args.seed, **overrides)
    with open(os.path.join(args.out, COMPLETE_MARKER)) as fh:
        info = json.load(fh)
    print(
        f"wrote {args.out}: {len(info['train_frames'])} train frames, "
        f"{len(info['gallery_frames'])} gallery "
        f"frames, {len(info['train_pids'])} train ids, {len(info['test_pids'])} test ids, "
        f"{info['num_queries']} queries"
    )


if __name__ == "__main__":
    main()
