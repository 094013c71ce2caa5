"""Write a PRW or CUHK-SYSU copy (distributed format) as a person-search JSON file.

    python -m stl_search.data.convert prw ROOT OUT.json
    python -m stl_search.data.convert cuhk_sysu ROOT OUT.json [--gallery-size 100]

The native loaders read the copy; their dicts are written as the JSON of docs/own-data.md
(atomically, the image root recorded relative to OUT.json's folder) and read back: the
conversion fails unless the JSON loads to exactly the same dicts, so that training and
evaluating from the JSON gives what the native loaders give. A CUHK-SYSU file holds the gallery
lists of one ``TestG<size>.mat`` (``--gallery-size``; the standard protocol is 100).
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional, Sequence

from ..utils.cli import HelpFormatter
from .datasets.cuhk_sysu import GALLERY_SIZES, load_cuhk_sysu_queries, load_cuhk_sysu_scenes
from .datasets.person_search_json import (
    check_person_search_file,
    dicts_to_json,
    json_to_dicts,
    write_person_search_json,
)
from .datasets.prw import load_prw_queries, load_prw_scenes

__all__ = ["load_native", "convert", "main"]

FORMATS = ("prw", "cuhk_sysu")


def load_native(fmt: str, root: str, gallery_size: int = 100) -> Dict[str, List[dict]]:
    """``{"train", "gallery", "query"}`` dicts of a copy in its distributed format, and the folder
    its ``image_id``\\ s are relative to (key ``"image_root"``)."""
    if fmt == "prw":
        return {
            "train": load_prw_scenes(root, "train"),
            "gallery": load_prw_scenes(root, "gallery"),
            "query": load_prw_queries(root),
            "image_root": os.path.join(root, "frames"),
        }
    if fmt == "cuhk_sysu":
        return {
            "train": load_cuhk_sysu_scenes(root, "train"),
            "gallery": load_cuhk_sysu_scenes(root, "gallery"),
            "query": load_cuhk_sysu_queries(root, gallery_size),
            "image_root": os.path.join(root, "Image", "SSM"),
        }
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def _first_difference(expected: List[dict], got: List[dict]) -> str:
    if len(expected) != len(got):
        return f"{len(expected)} records, read back {len(got)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            keys = sorted(k for k in set(e) | set(g) if e.get(k) != g.get(k))
            return f"record {i} ({e.get('image_id')!r}) differs in {keys}"
    return "no difference"


def convert(fmt: str, root: str, out: str, gallery_size: int = 100) -> Dict[str, int]:
    """Convert the copy at ``root`` to ``out``; returns the number of records per split.

    Raises:
        RuntimeError: if the written file does not load back to the native dicts (the file is
            kept for inspection).
    """
    native = load_native(fmt, root, gallery_size)
    image_root = native.pop("image_root")
    data = dicts_to_json(native["train"], native["gallery"], native["query"], image_root)
    data = {
        "info": {"description": f"{fmt} at {os.path.abspath(root)}", "source_format": fmt},
        **data,
    }
    write_person_search_json(data, out, image_root=image_root)
    back = json_to_dicts(*check_person_search_file(out))
    for split, dicts in native.items():
        if back[split] != dicts:
            raise RuntimeError(
                f"{out}: {split} split does not read back exactly: "
                + _first_difference(dicts, back[split])
            )
    return {split: len(dicts) for split, dicts in native.items()}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("format", choices=FORMATS, help="the layout of the copy")
    parser.add_argument("root", help="the copy's root, e.g. datasets/PRW-v16.04.20")
    parser.add_argument("out", help="the JSON file to write")
    parser.add_argument(
        "--gallery-size",
        type=int,
        default=100,
        choices=GALLERY_SIZES,
        help="CUHK-SYSU: the TestG<size>.mat whose gallery lists the queries carry",
    )
    args = parser.parse_args(argv)
    counts = convert(args.format, args.root, args.out, args.gallery_size)
    print(
        f"{args.out}: "
        + ", ".join(f"{n} {split}" for split, n in counts.items())
        + " records; reads back to the same data set dicts"
    )
    return counts


if __name__ == "__main__":
    main()
