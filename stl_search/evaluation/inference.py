"""``inference_on_person_search``: Detectron2's ``inference_on_dataset`` for two loaders.

Person search needs two passes before scoring: the gallery split through detection (each image's
``instances`` with ``pred_embeddings``) and the query split through the model's query mode (dicts
with ``query_boxes`` -> ``{"query_embedding": Tensor(D,)}``). Both feed one evaluator, which is
reset once before and evaluated once after them.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from contextlib import ExitStack
from typing import Callable, Iterable

import torch
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils.comm import get_world_size
from detectron2.utils.logger import log_every_n_seconds
from torch import nn

logger = logging.getLogger(__name__)


def _run_loader(model: Callable, loader: Iterable, process: Callable, phase: str) -> None:
    """Run ``model`` over ``loader`` and hand each batch to ``process``, logging progress, ETA and
    per-iteration timings as Detectron2 does (the first few iterations are warm-up, not timed)."""
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:
        total = 0
    logger.info("Start %s inference on %s batches", phase, total or "?")
    num_warmup = min(5, total - 1) if total > 1 else 0
    start_time = time.perf_counter()
    data_time = compute_time = eval_time = 0.0
    iters = 0
    start_data = time.perf_counter()
    for idx, inputs in enumerate(loader):
        data_time += time.perf_counter() - start_data
        if idx == num_warmup:
            start_time = time.perf_counter()
            data_time = compute_time = eval_time = 0.0
        t0 = time.perf_counter()
        outputs = model(inputs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        compute_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        process(inputs, outputs)
        eval_time += time.perf_counter() - t0
        iters = idx + 1
        timed = idx + 1 - num_warmup * int(idx >= num_warmup)
        per_iter = (time.perf_counter() - start_time) / max(timed, 1)
        if idx >= num_warmup * 2 or compute_time / max(timed, 1) > 5:
            eta = datetime.timedelta(seconds=int(per_iter * max(total - idx - 1, 0)))
            log_every_n_seconds(
                logging.INFO,
                f"{phase} inference done {idx + 1}/{total or '?'}. "
                f"Dataloading: {data_time / max(timed, 1):.4f} s/iter. "
                f"Inference: {compute_time / max(timed, 1):.4f} s/iter. "
                f"Eval: {eval_time / max(timed, 1):.4f} s/iter. "
                f"Total: {per_iter:.4f} s/iter. ETA={eta}",
                n=5,
            )
        start_data = time.perf_counter()
    timed_iters = max(iters - num_warmup, 1)
    total_time = time.perf_counter() - start_time
    logger.info(
        "Total %s inference time: %s (%.6f s / iter per device, on %d devices)",
        phase,
        datetime.timedelta(seconds=total_time),
        total_time / timed_iters,
        get_world_size(),
    )
    logger.info(
        "Total %s inference pure compute time: %s (%.6f s / iter per device, on %d devices)",
        phase,
        datetime.timedelta(seconds=int(compute_time)),
        compute_time / timed_iters,
        get_world_size(),
    )


def inference_on_person_search(
    model: Callable, gallery_loader: Iterable, query_loader: Iterable, evaluator
) -> "OrderedDict":
    """Run the gallery and the query split through ``model`` and return ``evaluator.evaluate()``.

    Args:
        model: a callable (an ``nn.Module`` is put in eval mode for the duration and restored).
        gallery_loader: batches of gallery dicts (the mapper's "test" mode).
        query_loader: batches of query dicts (the mapper's "query" mode, with ``query_boxes``).
        evaluator: a :class:`PersonSearchEvaluator` (anything with ``reset``, ``process``,
            ``evaluate``; ``process_queries`` is used for the queries when it exists).

    Returns:
        The evaluator's results; ``{}`` on non-main processes.
    """
    evaluator.reset()
    process_queries = getattr(evaluator, "process_queries", evaluator.process)
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        _run_loader(model, gallery_loader, evaluator.process, "gallery")
        _run_loader(model, query_loader, process_queries, "query")
    start = time.perf_counter()
    results = evaluator.evaluate()
    logger.info("Person-search scoring took %.2f s", time.perf_counter() - start)
    return results if results is not None else OrderedDict()
