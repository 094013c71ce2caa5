"""``TEST.FAST_PATH.COMPILE``: the base nets under ``torch.compile`` give the reference path's
detections (boxes within 0.5 px, same order) and embeddings (cosine >= 0.9999), on the tiny model.

Compilation needs a working inductor backend (a C++ compiler on the CPU); where a one-line
compiled function cannot run, the exactness test is skipped with the reason.
"""

from __future__ import annotations

import functools

import pytest
import torch
from detectron2.modeling import build_model

from stl_search.modeling.fast_path import prepare_inference_model

from .helpers import assert_same_detections, fast_path_inputs, randomise_norms, run_batches


@functools.lru_cache(maxsize=None)
def _compile_unavailable() -> str:
    """Why torch.compile cannot run here ("" when it can)."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2))
    except Exception as e:  # any backend failure means: nothing to test here
        return f"torch.compile does not run here: {type(e).__name__}: {e}"[:300]
    return ""


def test_compiled_base_nets_give_the_same_detections_and_embeddings(cfg):
    if _compile_unavailable():
        pytest.skip(_compile_unavailable())
    torch._dynamo.reset()
    model = randomise_norms(build_model(cfg))
    cfg.TEST.FAST_PATH.FOLD_BN = True
    cfg.TEST.FAST_PATH.COMPILE = "default"
    fast = prepare_inference_model(model, cfg)
    assert fast is not model and fast.backbone._compiled_call_impl is not None
    assert model.backbone._compiled_call_impl is None  # the given model is never touched
    inputs = fast_path_inputs([(96, 64), (96, 64)])
    assert_same_detections(run_batches(model, inputs), run_batches(fast, inputs))


def test_compile_alone_turns_the_fast_path_on_and_a_bad_mode_is_named(cfg):
    model = build_model(cfg)
    cfg.TEST.FAST_PATH.COMPILE = "fastest"
    with pytest.raises(ValueError, match="TEST.FAST_PATH.COMPILE: 'fastest'"):
        prepare_inference_model(model, cfg)
    cfg.TEST.FAST_PATH.COMPILE = "default"
    assert prepare_inference_model(model, cfg) is not model
