"""``python -m stl_search.export``: export a trained person-search model (package docstring).

    python -m stl_search.export --config-file configs/synthetic/person_search.yaml \
        --format onnx --out output/export/onnx MODEL.WEIGHTS output/.../model_final.pth
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional, Sequence

from detectron2.utils.logger import setup_logger

from ..engine.model import build_inference_model
from ..engine.setup import load_config
from ..utils.cli import HelpFormatter
from .exporter import FORMATS, export_person_search
from .graphs import check_exportable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.export",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="the model's config (YAML)"
    )
    parser.add_argument(
        "--format", required=True, choices=sorted(FORMATS), help="the graph format to write"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    setup_logger(name="stl_search", abbrev_name="stl")
    cfg = load_config(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cpu"  # the graphs are traced on the CPU
    cfg.freeze()
    check_exportable(cfg)  # before the (slow) model build
    model = build_inference_model(cfg)  # needs no training set
    description = export_person_search(model, cfg, args.out, args.format)
    logging.getLogger("stl_search").info(
        "exported %s graphs to %s (%s)",
        args.format,
        args.out,
        ", ".join(g["file"] for g in description["graphs"].values()),
    )
    return description


if __name__ == "__main__":
    main()
