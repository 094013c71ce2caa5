#!/usr/bin/env python
"""Exported graphs against eager PyTorch on the CPU: onnxruntime, TorchScript.

    python benchmarks/export_speed.py [--threads 2] [--size 960x640] [--persons 10] [--iters 5]
        [--warmup 2] [--config configs/Base-PersonSearch.yaml] [--no-mrfp]

Builds the person-search model (random weights, MRFP unless ``--no-mrfp``), exports it with
``stl_search.export`` to ONNX and TorchScript in a temporary folder, and times, interleaved in one
run (``inference_speed.interleaved``: every round runs each variant once, order rotated), the
gallery forward (image -> detections + embeddings) and the query forward (image + one box ->
embedding) of: eager PyTorch (``model(inputs)``), onnxruntime and TorchScript (both through
``ExportedPersonSearch``, the same dicts in and out). Every image yields exactly ``--persons``
detections, as in ``inference_speed.py`` (score threshold 0, ``TEST.DETECTIONS_PER_IMAGE``).
Ratios are medians of per-round ratios (PyTorch time / exported time: above 1 = faster than
PyTorch). Threads: ``torch.set_num_threads`` for PyTorch and TorchScript, onnxruntime's
``intra_op_num_threads`` for ONNX. It also prints the parity of the exported outputs on the
timed image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from detectron2.modeling import build_model  # noqa: E402
from inference_speed import interleaved, parse_size  # noqa: E402  (this folder is on sys.path)
from machine import cpu_line  # noqa: E402

from stl_search.engine.setup import load_config  # noqa: E402
from stl_search.export import ExportedPersonSearch, export_person_search  # noqa: E402
from stl_search.export.parity import compare_detections  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402


def build_cfg(config: str, mrfp: bool, persons: int, num_ids: int):
    """``inference_speed.build``'s settings: random weights, exactly ``persons`` detections."""
    cfg = load_config(config)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.MRFP.ENABLED = mrfp
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = num_ids
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = persons
    return cfg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--config",
        default=os.path.join(os.path.dirname(HERE), "configs", "Base-PersonSearch.yaml"),
        help="the model's config (random weights)",
    )
    parser.add_argument("--size", default="960x640", help="WIDTHxHEIGHT of the input")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--persons", type=int, default=10, help="detections per image")
    parser.add_argument("--iters", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--num-ids", type=int, default=482, help="ID classifier size (PRW: 482)")
    parser.add_argument("--no-mrfp", action="store_true", help="the single-level baseline")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cfg = build_cfg(args.config, not args.no_mrfp, args.persons, args.num_ids)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    w, h = parse_size(args.size)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    gallery = [{"image": image, "height": h, "width": w}]
    query_box = torch.tensor([[0.4 * w, 0.2 * h, 0.5 * w, 0.8 * h]])
    query = [dict(gallery[0], query_boxes=query_box)]

    runtimes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in (("onnx", "onnxruntime"), ("torchscript", "torchscript")):
            out = os.path.join(tmp, fmt)
            export_person_search(model, cfg, out, fmt)
            runtimes[name] = ExportedPersonSearch(out, num_threads=args.threads)
        desc = runtimes["onnxruntime"].description["versions"]
        print(
            f"machine: {cpu_line()}; {args.threads} threads; torch {torch.__version__}; "
            f"onnxruntime {_ort_version()}; onnx {desc['onnx']} (opset {desc['opset']})"
        )
        print(
            f"config {os.path.relpath(args.config)}, {'baseline' if args.no_mrfp else 'MRFP'}, "
            f"{w}x{h}, {args.persons} detections/image; medians over {args.iters} interleaved "
            f"rounds (after {args.warmup} warm-up)"
        )
        with torch.no_grad():
            reference = model(gallery)[0]["instances"]
        for name, runtime in runtimes.items():
            parity = compare_detections(reference, runtime(gallery)[0]["instances"])
            print(f"parity {name}: {parity.summary()}")

        variants = {"pytorch": model, **runtimes}
        for kind, inputs in (("gallery", gallery), ("query", query)):
            fns = {k: (lambda f=f, x=inputs: f(x)) for k, f in variants.items()}
            runs = interleaved(fns, "cpu", args.warmup, args.iters)
            print(f"\n== {kind} forward")
            print(f"{'':12s} {'sec/img':>8s} {'cpu s':>7s} {'speed-up vs pytorch (wall)':>27s}")
            for k in variants:
                wall = statistics.median(r[0] for r in runs[k])
                cpu = statistics.median(r[1] for r in runs[k])
                ratio = statistics.median(p[0] / r[0] for p, r in zip(runs["pytorch"], runs[k]))
                print(f"{k:12s} {wall:8.3f} {cpu:7.2f} {ratio:26.2f}x")
    return 0


def _ort_version() -> str:
    import onnxruntime  # noqa: PLC0415  (optional dependency, imported by the runtime anyway)

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
