"""Search a folder of scene images for the person in a query box, without a prebuilt index.

The gallery goes into a temporary gallery index (the predictor's detections, kept when their
score reaches ``TEST.PERSON_SEARCH.SCORE_THRESH`` as in evaluation, searched exactly) and the
query box through the predictor's identification path. The command is ``python -m
stl_search.search`` (:mod:`stl_search.search`: arguments, printing and the picture only). For
galleries searched more than once, build an index with ``python -m stl_search.index build`` and
query it instead.
"""

from __future__ import annotations

import tempfile
from typing import List, Sequence

from ..engine.predictor import PersonSearchPredictor
from .backends import ExactSearcher
from .builder import commit_index, extract_shards, plan_index
from .query import Hit, search_index
from .shards import GalleryIndex
from .sources import image_records

__all__ = ["list_gallery", "search"]


def list_gallery(folder: str) -> List[str]:
    """Image files of ``folder`` (sorted); raises if there are none."""
    return [r["file_name"] for r in image_records(folder, flag="--gallery")]


def search(
    predictor: PersonSearchPredictor,
    query_image: str,
    query_box: Sequence[float],
    gallery_files: Sequence[str],
) -> List[Hit]:
    """All kept detections of ``gallery_files`` ranked by similarity to the query person.

    ``predictor`` (its model: PyTorch or an export, prepared once) embeds the query and detects
    in the gallery; its config gives the score threshold of the kept detections.
    """
    cfg = predictor.cfg
    query_embedding = predictor.embed_query(query_image, query_box)
    records = [{"file_name": f, "frame_index": -1, "timestamp": -1.0} for f in gallery_files]
    with tempfile.TemporaryDirectory(prefix="stl_search_") as folder:
        source = {"input": "gallery", "kind": "images", "sample_fps": None, "records": records}
        plan_index(folder, [source], cfg, predictor=predictor)
        extract_shards(folder, predictor=predictor)
        commit_index(folder)
        gallery = GalleryIndex.open(folder)
        return search_index(gallery, ExactSearcher(gallery), query_embedding, len(gallery))
