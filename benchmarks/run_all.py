#!/usr/bin/env python
"""Run every benchmark in one go and keep their outputs (``make bench``).

    python benchmarks/run_all.py [--only inference_speed roi_align_speed eval_speed train_speed
        index_speed export_speed] [--threads 2]

Each benchmark prints its own figures and ratios; this driver runs them one after another (never
in parallel: they compete for the same cores), tees each output to
``benchmarks/results/<name>.txt`` with the machine it ran on, and exits non-zero if one fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from machine import cpu_line  # this folder is on sys.path when run as a script

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from stl_search.utils.cli import HelpFormatter  # noqa: E402
from stl_search.utils.io import atomic_open  # noqa: E402

BENCHMARKS = (
    "inference_speed",
    "roi_align_speed",
    "eval_speed",
    "train_speed",
    "index_speed",
    "export_speed",
)


def machine_line() -> str:
    """CPU model, core count, GPU and torch version: the context every figure needs."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_line()}, {gpu}, torch {torch.__version__}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        default=list(BENCHMARKS),
        help="the benchmarks to run",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for each benchmark"
    )
    args = parser.parse_args()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    header = f"machine: {machine_line()}\ndate: {time.strftime('%Y-%m-%d %H:%M')}\n"
    print(header)
    failed = []
    for name in args.only:
        cmd = [sys.executable, os.path.join(HERE, f"{name}.py")]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        print(f"=== {name}: {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr[-4000:] if proc.returncode else "")
        with atomic_open(os.path.join(HERE, "results", f"{name}.txt"), "w") as f:
            f.write(header + "\n" + proc.stdout)
        if proc.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
