"""Helpers shared by the evaluation tests (the data fixtures are in :mod:`.fixtures`)."""

from __future__ import annotations

from . import fixtures as F


def run(evaluator, gallery, queries, rng=None, split_calls=True):
    """Feed fake gallery and query outputs to ``evaluator`` (in two gallery calls, queries through
    ``process_queries`` or, with ``split_calls=False``, ``process``) and return its results."""
    evaluator.reset()
    gi, go = F.fake_gallery_outputs(gallery, rng)
    evaluator.process(gi[:2], go[:2])
    evaluator.process(gi[2:], go[2:])
    qi, qo = F.fake_query_outputs(queries, rng)
    if split_calls:
        evaluator.process_queries(qi, qo)
    else:  # query outputs through `process` are recognised too
        evaluator.process(qi, qo)
    return evaluator.evaluate()
