"""``python -m stl_search.index``: see :mod:`stl_search.index.cli`."""

from .cli import main

main()
