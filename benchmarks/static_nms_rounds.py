#!/usr/bin/env python
"""How many rounds the static-shape NMS needs on real candidate sets, and what it costs.

    python benchmarks/static_nms_rounds.py [--weights MODEL.pth] [--images 60]
        [--pre-nms-topk 1000 6000] [--rounds 24] [--threads 2] [--json FILE]

The static-shape gallery forward (``TEST.FAST_PATH.STATIC_SHAPES``) runs each NMS as a fixed
number of parallel rounds (``TEST.FAST_PATH.STATIC_NMS_ROUNDS``,
``stl_search/modeling/static_postprocess.py``); an image whose NMS needs more is recomputed on
the dynamic path. How often that happens depends on the candidate sets, so this script measures
it on them: ``--images`` frames of the synthetic gallery through the synthetic model (trained
weights with ``--weights``, e.g. the demo's ``output/stl_pipeline/2_person_search/
model_final.pth``; random weights without), once per ``--pre-nms-topk`` (the synthetic config's
1000 and the paper configs' 6000; post-NMS 100 and 300). Every candidate set handed to the NMS
(the RPN's and the box step's) is recorded with the number of best kept boxes its caller uses,
and the fewest rounds that settle it are counted (checked against ``greedy_nms_mask``: settled
at that many rounds, not at one fewer). Printed per stage: candidates per set, the
rounds needed (median, 99th percentile, maximum) and the share of images that would fall back at
``--rounds``. Then, in interleaved rounds, seconds per image of the whole gallery forward on the
static path (eager) and on the sync-free dynamic path, and whether both gave the same boxes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List

import torch
from torchvision.ops import box_iou

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from machine import cpu_line  # noqa: E402  (benchmarks/, on the path as the script's folder)

import stl_search  # noqa: E402,F401  (registers the model and the synthetic data set)
from stl_search.config import add_stl_search_config  # noqa: E402
from stl_search.data.build import build_person_search_test_loader  # noqa: E402
from stl_search.engine.checkpoint import PersonSearchCheckpointer  # noqa: E402
from stl_search.engine.model import resolve_inference_metadata  # noqa: E402
from stl_search.engine.setup import load_config  # noqa: E402
from stl_search.modeling import static_postprocess  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402
from stl_search.utils.io import atomic_write_json  # noqa: E402

CONFIG = os.path.join("configs", "synthetic", "person_search.yaml")
ROOT = os.path.dirname(HERE)


def build(weights: str, pre_nms_topk: int, static: bool):
    """The synthetic model at ``pre_nms_topk`` candidates (post-NMS: 100 at the config's 1000,
    else the paper configs' 300), on the static or the sync-free dynamic path."""
    post = 100 if pre_nms_topk <= 1000 else 300
    opts = ["MODEL.RPN.PRE_NMS_TOPK_TEST", pre_nms_topk, "MODEL.RPN.POST_NMS_TOPK_TEST", post]
    opts += ["MODEL.PROPOSAL_GENERATOR.NAME", "SyncFreeRPN"]
    opts += ["MODEL.ROI_HEADS.SYNC_FREE_INFERENCE", True, "TEST.FAST_PATH.STATIC_SHAPES", static]
    opts += ["MODEL.DEVICE", "cpu"]
    if not weights:
        opts += ["MODEL.PERSON_SEARCH.NUM_IDENTITIES", 100]
    cfg = load_config(os.path.join(ROOT, CONFIG), [str(v) for v in opts])
    if weights:
        cfg = resolve_inference_metadata(cfg, weights)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if weights:
        PersonSearchCheckpointer(model).resume_or_load(weights, resume=False)
    return model, cfg


def rounds_needed(boxes, scores, groups, thresh, needed: int = -1) -> List[int]:
    """Per set of the batch: the fewest rounds after which ``greedy_nms_mask`` says settled.

    The rounds are run once, one at a time, on one IoU matrix (``greedy_nms_mask``'s rule and
    settling test, repeated here so that each round is not recomputed from the start); the
    answer ``r`` is then checked against ``greedy_nms_mask`` itself: settled at ``r`` rounds,
    not at ``r - 1``."""
    out = []
    for i in range(boxes.shape[0]):
        g = groups if groups is None or groups.dim() == 1 else groups[i : i + 1]
        args = (boxes[i : i + 1], scores[i : i + 1], g, thresh)
        order = scores[i].argsort(descending=True, stable=True)
        b = boxes[i].float()[order]
        overlap = box_iou(b, b) > thresh
        if g is not None:
            gs = g.reshape(-1)[order]
            overlap &= gs[:, None] == gs[None, :]
        overlap = overlap.triu(diagonal=1)
        keep, r = torch.ones(len(b), dtype=torch.bool), 0
        while True:
            r += 1
            new = ~(overlap & keep[:, None]).any(dim=0)
            changed, keep = new != keep, new
            if needed >= 0:
                changed &= (keep.cumsum(0) - keep.long()) < needed
            if not changed.any():
                break
        mask = static_postprocess.greedy_nms_mask
        assert bool(mask(*args, rounds=r, needed=needed)[1][0])
        assert r == 1 or not bool(mask(*args, rounds=r - 1, needed=needed)[1][0])
        out.append(r)
    return out


def record_rounds(model, batches) -> Dict[str, List[int]]:
    """The rounds needed by each NMS call of the static forward over ``batches``, by stage
    (the first call of a forward is the RPN's, the second the box step's), and the finite
    candidates of each set."""
    calls = []
    original = static_postprocess.greedy_nms_mask

    def recorder(boxes, scores, groups, thresh, rounds, needed=-1):
        calls.append((boxes.detach(), scores.detach(), groups, thresh, needed))
        return original(boxes, scores, groups, thresh, rounds, needed)

    static_postprocess.greedy_nms_mask = recorder
    try:
        with torch.no_grad():
            for batch in batches:
                model.static_gallery_forward(torch.stack([x["image"] for x in batch]))
    finally:
        static_postprocess.greedy_nms_mask = original
    stages: Dict[str, List[int]] = {
        k: [] for k in ("rpn", "box", "candidates_rpn", "candidates_box")
    }
    for n, call in enumerate(calls):
        stage = ("rpn", "box")[n % 2]
        stages[stage] += rounds_needed(*call)
        stages["candidates_" + stage] += [int(k) for k in torch.isfinite(call[1]).sum(dim=1)]
    return stages


def timed(models, batches, repeats: int):
    """Seconds per image of each model's gallery inference, in interleaved rounds; and whether
    their boxes agree."""
    times = {name: [] for name in models}
    outputs = {}
    with torch.no_grad():
        for r in range(repeats):
            for name in list(models)[r % 2 :] + list(models)[: r % 2]:
                t0 = time.perf_counter()
                outputs[name] = [o for b in batches for o in models[name](b)]
                times[name].append((time.perf_counter() - t0) / sum(len(b) for b in batches))
    a, b = outputs.values()
    same = all(
        torch.allclose(x["instances"].pred_boxes.tensor, y["instances"].pred_boxes.tensor)
        for x, y in zip(a, b)
    )
    return {name: statistics.median(t) for name, t in times.items()}, same


def percentile(values: List[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--weights", default="", help="trained synthetic model; none: random")
    parser.add_argument("--images", type=int, default=60, help="gallery frames measured")
    parser.add_argument(
        "--pre-nms-topk", type=int, nargs="+", default=[1000, 6000], help="RPN candidates"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds that count a fallback (default: config's)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = add_stl_search_config(get_cfg()).TEST.FAST_PATH.STATIC_NMS_ROUNDS
    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_line()}, torch {torch.__version__}")
    print(f"weights: {args.weights or 'random'}; {args.images} synthetic gallery frames")
    DatasetCatalog.get("synthetic_gallery")  # generates the synthetic set if absent
    report = {"weights": args.weights, "images": args.images, "rows": []}
    for topk in args.pre_nms_topk:
        static, cfg = build(args.weights, topk, static=True)
        dynamic, _ = build(args.weights, topk, static=False)
        dynamic.load_state_dict(static.state_dict())
        loader = build_person_search_test_loader(cfg, "synthetic_gallery", batch_size=1)
        batches = [b for _, b in zip(range(args.images), loader)]
        stages = record_rounds(static, batches)
        row = {"pre_nms_topk": topk}
        for stage in ("rpn", "box"):
            r, c = stages[stage], stages["candidates_" + stage]
            falls = sum(x > args.rounds for x in r) / len(r)
            row[stage] = {
                "candidates_median": statistics.median(c),
                "rounds_median": statistics.median(r),
                "rounds_p99": percentile(r, 0.99),
                "rounds_max": max(r),
                f"fallback_share_at_{args.rounds}": falls,
            }
            print(
                f"PRE_NMS_TOPK {topk:>5} {stage:>3} NMS: candidates median "
                f"{statistics.median(c):.0f}; rounds needed median {statistics.median(r):.0f}, "
                f"p99 {percentile(r, 0.99)}, max {max(r)}; images past {args.rounds} rounds: "
                f"{100 * falls:.1f}%"
            )
        secs, same = timed({"static": static, "dynamic": dynamic}, batches[:10], args.repeats)
        row.update(seconds_per_image=secs, same_boxes=same)
        print(
            f"PRE_NMS_TOPK {topk:>5} gallery forward, s/image: static (eager) "
            f"{secs['static']:.4f}, sync-free dynamic {secs['dynamic']:.4f} (ratio "
            f"{secs['static'] / secs['dynamic']:.2f}); same boxes: {same}"
        )
        report["rows"].append(row)
    if args.json:
        atomic_write_json(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
