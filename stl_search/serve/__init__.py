"""A local web page to search a gallery index: ``python -m stl_search.serve --index DIR``
(:mod:`stl_search.serve.app`, the page :mod:`stl_search.serve.page`)."""
