"""Search a folder of scene images for the person in a query box (a one-off index).

    python -m stl_search.search --config-file configs/synthetic/person_search.yaml \
        --query QUERY.jpg --box x1 y1 x2 y2 --gallery FOLDER --out result.png [--topk 5] \
        [--export DIR] MODEL.WEIGHTS output/person_search/model_final.pth MODEL.DEVICE cpu

Prints the top-k hits and saves the query beside them; the search itself is
:func:`stl_search.index.folder_search.search`. For galleries searched more than once, build an
index with ``python -m stl_search.index build`` and query it instead. ``--export DIR`` runs the
ONNX or TorchScript export in DIR (``python -m stl_search.export``) instead of PyTorch; it is
refused unless made from ``MODEL.WEIGHTS`` (sha256) with this config's settings.
"""

from __future__ import annotations

import argparse
from typing import List, Sequence

from .engine.predictor import PersonSearchPredictor
from .engine.setup import load_config
from .export.predictor import exported_predictor
from .index.arguments import positive_int
from .index.folder_search import list_gallery, search
from .index.query import Hit, format_hits
from .index.render import check_picture_path, render
from .utils.cli import HelpFormatter

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="the model's config (YAML)"
    )
    parser.add_argument("--query", required=True, help="image holding the query person")
    parser.add_argument(
        "--box",
        required=True,
        nargs=4,
        type=float,
        metavar=("X1", "Y1", "X2", "Y2"),
        help="the query person's box in --query, in pixels",
    )
    parser.add_argument("--gallery", required=True, help="folder of scene images to search")
    parser.add_argument(
        "--out", default="search_result.png", help="picture of the query and its top hits"
    )
    parser.add_argument("--topk", type=positive_int, default=5, help="hits printed and drawn")
    parser.add_argument(
        "--export",
        metavar="DIR",
        help="run the ONNX or TorchScript export in DIR instead of PyTorch (docs/deploying.md)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(argv: Sequence[str] = None) -> List[Hit]:
    args = build_parser().parse_args(argv)
    check_picture_path(args.out)
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    predictor = exported_predictor(cfg, args.export) if args.export else PersonSearchPredictor(cfg)
    hits = search(predictor, args.query, args.box, list_gallery(args.gallery))
    top = hits[: args.topk]
    print(format_hits(top))
    render(args.query, args.box, top, args.out)
    print(f"saved {args.out}")
    return hits


if __name__ == "__main__":
    main()
