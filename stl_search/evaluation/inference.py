"""``inference_on_person_search``: Detectron2's ``inference_on_dataset`` over two loaders.

Person search needs two passes before scoring: the gallery split through detection (each image's
``instances`` with ``pred_embeddings``) and the query split through the model's query mode (dicts
with ``query_boxes`` -> ``{"query_embedding": Tensor(D,)}``). Each pass is one
``inference_on_dataset`` call (its loop, timing, logging, ``inference_context`` and ``no_grad``),
with an adapter that hands the outputs to the one evaluator, which is reset once before the two
passes and evaluated once after them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Callable, Iterable

from detectron2.evaluation import DatasetEvaluator, inference_on_dataset

logger = logging.getLogger(__name__)


class _CollectInto(DatasetEvaluator):
    """One pass's adapter: ``process`` goes to ``process``; ``reset`` and ``evaluate`` do nothing
    (the wrapped evaluator is reset and evaluated once, around both passes)."""

    def __init__(self, process: Callable) -> None:
        self._process = process

    def reset(self) -> None:
        pass

    def process(self, inputs, outputs) -> None:
        self._process(inputs, outputs)

    def evaluate(self) -> None:
        return None


def inference_on_person_search(
    model: Callable, gallery_loader: Iterable, query_loader: Iterable, evaluator
) -> "OrderedDict":
    """Run the gallery and the query split through ``model`` and return ``evaluator.evaluate()``.

    Args:
        model: a callable (an ``nn.Module`` is put in eval mode for each pass and restored).
        gallery_loader: batches of gallery dicts (the mapper's "test" mode); it must have a length,
            as for ``inference_on_dataset``.
        query_loader: batches of query dicts (the mapper's "query" mode, with ``query_boxes``).
        evaluator: a :class:`PersonSearchEvaluator` (anything with ``reset``, ``process``,
            ``evaluate``; ``process_queries`` is used for the queries when it exists).

    Returns:
        The evaluator's results; ``{}`` on non-main processes.
    """
    evaluator.reset()
    process_queries = getattr(evaluator, "process_queries", evaluator.process)
    logger.info("Person search: gallery pass")
    inference_on_dataset(model, gallery_loader, _CollectInto(evaluator.process))
    logger.info("Person search: query pass")
    inference_on_dataset(model, query_loader, _CollectInto(process_queries))
    start = time.perf_counter()
    results = evaluator.evaluate()
    logger.info("Person-search scoring took %.2f s", time.perf_counter() - start)
    return results if results is not None else OrderedDict()
