#!/usr/bin/env python
"""The environment and summary records of ``benchmarks/gpu_check.sh``.

    python benchmarks/gpu_check_report.py env --json RESULTS/env.json
    python benchmarks/gpu_check_report.py summary --env ENV_JSON --steps STEPS_TSV --json OUT \
        [--dry-run]

``env`` imports what every later step needs (torch, torchvision, Detectron2, stl_search), prints
the versions and the machine and writes them with the date: an image that lacks a package fails
here, first, with the import's own message. ``summary`` writes ``OUT`` (``summary.json``):
the machine, the versions and the date (from ``env``'s record), whether it was a dry run, and
each step's exit status and seconds (read from the tab-separated ``name rc seconds`` lines the
script appends as steps finish), so that every figure of the check is reported with where and
when it was measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from machine import cpu_line  # noqa: E402  (benchmarks/, on the path as the script's folder)


def write_json(record: dict, path: str) -> None:
    """Write ``path`` whole or not at all. Not ``stl_search.utils.io``: ``summary`` must also
    run where the project cannot be imported (a failed wheel install), to record that."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def environment() -> dict:
    """Machine, versions and date (UTC); importing the packages is part of the check (inside
    the function: ``summary`` runs without them)."""
    import detectron2  # noqa: PLC0415
    import torch  # noqa: PLC0415
    import torchvision  # noqa: PLC0415

    import stl_search  # noqa: PLC0415,F401

    cuda = torch.cuda.is_available()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": torch.cuda.get_device_name(0) if cuda else cpu_line(),
        "cpu": cpu_line(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": detectron2.__version__,
        "cuda": torch.version.cuda if cuda else None,
    }


def read_steps(path: str) -> dict:
    """``{name: {"rc": int, "seconds": int}}`` from the ``name<TAB>rc<TAB>seconds`` lines."""
    steps = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                name, rc, seconds = line.rstrip("\n").split("\t")
                steps[name] = {"rc": int(rc), "seconds": int(seconds)}
    return steps


def summary(env_path: str, steps_file: str, dry_run: bool) -> dict:
    if os.path.isfile(env_path):
        with open(env_path) as f:
            env = json.load(f)
    else:  # the env step failed: still say when, where and with which torch (if any)
        env = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": cpu_line(),
            "torch": None,
        }
    steps = read_steps(steps_file)
    return {
        **env,
        "dry_run": dry_run,
        "steps": steps,
        "failed": sorted(k for k, v in steps.items() if v["rc"] != 0),
        "total_seconds": sum(v["seconds"] for v in steps.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )  # every option is required or a flag: no defaults to show
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="the machine and library versions")
    env.add_argument("--json", required=True, help="write them here")
    summ = sub.add_parser("summary", help="the check's summary.json")
    summ.add_argument("--env", required=True, help="the env step's JSON")
    summ.add_argument("--steps", required=True, help="the steps' exit codes and seconds")
    summ.add_argument("--json", required=True, help="summary.json to write")
    summ.add_argument("--dry-run", action="store_true", help="the CPU dry run made it")
    args = parser.parse_args()
    if args.command == "env":
        record = environment()
        print(" ".join(f"{k} {v}" for k, v in record.items()))
        write_json(record, args.json)
        return 0
    record = summary(args.env, args.steps, args.dry_run)
    write_json(record, args.json)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
