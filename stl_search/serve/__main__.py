"""``python -m stl_search.serve --index DIR [--host 127.0.0.1] [--port 8000]``: the search page
of an index on this machine (Flask's development server; loopback only unless ``--host`` says
otherwise, which it warns about: the page reads the index's frames for anyone who can reach it).
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from detectron2.utils.logger import setup_logger

from ..index.backends import BACKENDS
from ..index.session import QuerySession
from ..utils.cli import HelpFormatter
from .app import create_app

logger = logging.getLogger("stl_search.serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.serve",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--index", required=True, metavar="DIR", help="a built index folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument("--backend", choices=BACKENDS, help="default: the index's own")
    return parser


def main(argv: Sequence[str] = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logger(name="stl_search", abbrev_name="stl")
    session = QuerySession(args.index, args.backend)
    print(
        f"loaded {args.index}: {len(session.gallery)} boxes, back end {session.backend}, "
        f"in {session.load_seconds:.2f} s"
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: anyone who reaches it can search the index", args.host)
    create_app(session).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
