"""Check a person-search JSON file (docs/own-data.md) before training on it.

    python -m stl_search.data.validate FILE [--image-root DIR]

Prints every problem with its record (list and index, image file, box index, field) and exits
with status 1 when there is any; otherwise prints a summary of each split (images, boxes,
identities and their long tail, from :mod:`stl_search.data.stats`) and exits with 0. The same
checks run when the file is registered (``register_person_search_json``) and loaded.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence, Tuple

from ..utils.cli import HelpFormatter
from .datasets.common import DatasetFormatError
from .datasets.person_search_json import (
    json_to_dicts,
    protocol_of,
    read_person_search_json,
    resolve_image_root,
)
from .datasets.person_search_json_checks import check_person_search_json
from .stats import compute_stats, format_stats

__all__ = ["validate", "main"]


def validate(json_file: str, image_root: Optional[str] = None) -> Tuple[bool, List[str]]:
    """(whether ``json_file`` has no problem, the report lines)."""
    try:
        data = read_person_search_json(json_file)
    except (FileNotFoundError, DatasetFormatError) as e:
        return False, [f"{json_file}: 1 problem", f"  {e}"]
    root = resolve_image_root(json_file, data, image_root)
    result = check_person_search_json(data, root)
    notes = [f"  note: {n}" for n in result.notes]
    if result.problems:
        head = f"{json_file}: {len(result.problems)} problem(s) (images under {root})"
        return False, [head] + [f"  {p}" for p in result.problems] + notes
    lines = [f"{json_file}: OK (images under {root}; protocol {protocol_of(data)})"]
    for split, dicts in json_to_dicts(data, root).items():
        lines.append(format_stats(split, compute_stats(dicts)) if dicts else f"{split}: empty")
    return True, lines + notes


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("json_file", help="the person-search JSON file to check")
    parser.add_argument(
        "--image-root",
        default=None,
        help="folder of the images (default: the file's image_root, else its folder)",
    )
    args = parser.parse_args(argv)
    ok, lines = validate(args.json_file, args.image_root)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
