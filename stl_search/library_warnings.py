"""Filters for the library warnings that the project's own use of Detectron2 raises in every
command and that a user cannot act on; each is filtered by its message where it arises, every
other warning is shown as usual.

- ``detectron2.modeling`` (its box coder) and fvcore (imported by ``detectron2.layers``) call
  ``torch.jit.script`` at import, which torch deprecates with a ``FutureWarning``: both are
  imported here, first, with that message ignored during these imports only.
- Detectron2's ``DefaultAnchorGenerator`` (the RPN of the detector) calls ``torch.meshgrid``
  without ``indexing``, and torch warns (``UserWarning``, first forward) that it will be
  required; the default, ``"ij"``, is the one Detectron2 means. That message is ignored.

``stl_search/__init__.py`` imports this module before anything else; a script that imports
Detectron2 before ``stl_search`` imports ``stl_search`` first (an ``# isort: split`` after it).
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.jit\.script` is deprecated",
        category=FutureWarning,
        module=r"torch\.jit\._script",
    )
    import detectron2.modeling  # noqa: F401
    import fvcore.nn  # noqa: F401

warnings.filterwarnings(
    "ignore",
    message=r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing",
    category=UserWarning,
    module=r"torch\.functional",
)
