#!/usr/bin/env python
"""Exported graphs against eager PyTorch: onnxruntime (per execution provider), TorchScript.

    python benchmarks/export_speed.py [--threads 2] [--size 960x640] [--persons 10] [--iters 5]
        [--warmup 2] [--config configs/Base-PersonSearch.yaml] [--no-mrfp]
        [--formats onnx torchscript] [--providers CPUExecutionProvider ...] [--device cpu|cuda]
        [--json FILE]

Builds the person-search model (random weights, MRFP unless ``--no-mrfp``), exports it with
``stl_search.export`` to ONNX and TorchScript (``--formats``) in a temporary folder, and times,
interleaved in one run (``timing.interleaved``: every round runs each variant once,
order rotated), the gallery forward (image -> detections + embeddings) and the query forward
(image + one box -> embedding) of: eager PyTorch (``model(inputs)``, on ``--device``),
onnxruntime with each of ``--providers`` (``CUDAExecutionProvider``,
``TensorrtExecutionProvider``: rows ``onnxruntime/CUDA``, ``onnxruntime/TensorRT``, each with
the CPU provider behind it for operators it lacks; a provider this onnxruntime build lacks is
reported and skipped) and TorchScript (on the CPU), all through ``ExportedPersonSearch``, the
same dicts in and out. Every image yields exactly ``--persons`` detections, as in
``inference_speed.py`` (score threshold 0, ``TEST.DETECTIONS_PER_IMAGE``). Ratios are medians
of per-round ratios (PyTorch time / exported time: above 1 = faster than PyTorch). Threads:
``torch.set_num_threads`` for PyTorch and TorchScript, onnxruntime's ``intra_op_num_threads``
for ONNX. It also prints the parity of each exported variant's outputs with the CPU model's on
the timed image. ``--json FILE`` writes the figures, the parity and the providers not run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from typing import Dict, List, Tuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from detectron2.modeling import build_model  # noqa: E402
from machine import cpu_line  # noqa: E402
from timing import interleaved, parse_size  # noqa: E402  (this folder is on sys.path)

from stl_search.engine.setup import load_config  # noqa: E402
from stl_search.export import ExportedPersonSearch, export_person_search  # noqa: E402
from stl_search.export.parity import compare_detections  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402
from stl_search.utils.io import atomic_write_json  # noqa: E402


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


#: Row names of onnxruntime's execution providers (the CPU's keeps the plain name).
PROVIDER_ROWS = {
    "CPUExecutionProvider": "onnxruntime",
    "CUDAExecutionProvider": "onnxruntime/CUDA",
    "TensorrtExecutionProvider": "onnxruntime/TensorRT",
}


def onnx_runtimes(folder: str, providers: List[str], threads: int) -> Tuple[Dict, Dict]:
    """One :class:`ExportedPersonSearch` per available provider of ``providers`` (each with the
    CPU's behind it, for the operators it lacks), and the reason for each one left out."""
    runtimes, missing = {}, {}
    for provider in providers:
        chain = [provider] + (
            ["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else []
        )
        try:
            runtime = ExportedPersonSearch(folder, num_threads=threads, providers=chain)
        except ValueError as e:  # this onnxruntime build lacks it
            missing[provider] = str(e)
            print(f"{PROVIDER_ROWS.get(provider, provider)}: not run: {e}")
            continue
        runtimes[PROVIDER_ROWS.get(provider, provider)] = runtime
    return runtimes, missing


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
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=["onnx", "torchscript"],
        default=["onnx", "torchscript"],
        help="the exports timed",
    )
    parser.add_argument(
        "--providers",
        nargs="+",
        default=["CPUExecutionProvider"],
        help="onnxruntime execution providers, one row each (one this build lacks is reported "
        "and skipped)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the PyTorch row runs (the export is traced on the CPU)",
    )
    parser.add_argument("--json", default="", help="also write the figures to this file")
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

    runtimes, missing = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            out = os.path.join(tmp, fmt)
            export_person_search(model, cfg, out, fmt)
            if fmt == "onnx":
                found, missing = onnx_runtimes(out, args.providers, args.threads)
                runtimes.update(found)
            else:
                runtimes["torchscript"] = ExportedPersonSearch(out, num_threads=args.threads)
        opset = next(
            (r.description["versions"] for r in runtimes.values() if r.format == "onnx"), None
        )
        onnx_line = f"; onnx {opset['onnx']} (opset {opset['opset']})" if opset else ""
        print(
            f"machine: {cpu_line()}; {args.threads} threads; torch {torch.__version__}; "
            f"onnxruntime {_ort_version()}{onnx_line}; PyTorch row on {args.device}"
        )
        print(
            f"config {os.path.relpath(args.config)}, {'baseline' if args.no_mrfp else 'MRFP'}, "
            f"{w}x{h}, {args.persons} detections/image; medians over {args.iters} interleaved "
            f"rounds (after {args.warmup} warm-up)"
        )
        with torch.no_grad():
            reference = model(gallery)[0]["instances"]
        report = {"device": args.device, "torch": torch.__version__, "size": args.size,
                  "onnxruntime": _ort_version(), "not_run": missing, "parity": {},
                  "rows": {}}  # fmt: skip
        for name, runtime in runtimes.items():
            parity = compare_detections(reference, runtime(gallery)[0]["instances"])
            report["parity"][name] = parity.summary()
            print(f"parity {name}: {parity.summary()}")

        on_device = [{**gallery[0], "image": image.to(args.device)}]
        variants = {"pytorch": model.to(args.device), **runtimes}
        inputs = {k: (gallery, query) for k in runtimes}
        inputs["pytorch"] = (on_device, [dict(on_device[0], query_boxes=query_box)])
        for pick, kind in enumerate(("gallery", "query")):
            fns = {k: (lambda f=f, x=inputs[k][pick]: f(x)) for k, f in variants.items()}
            runs = interleaved(fns, args.device, args.warmup, args.iters)
            print(f"\n== {kind} forward")
            print(f"{'':20s} {'sec/img':>8s} {'cpu s':>7s} {'speed-up vs pytorch (wall)':>27s}")
            for k in variants:
                wall = statistics.median(r[0] for r in runs[k])
                cpu = statistics.median(r[1] for r in runs[k])
                ratio = statistics.median(p[0] / r[0] for p, r in zip(runs["pytorch"], runs[k]))
                report["rows"].setdefault(kind, {})[k] = {"s_per_img": wall, "cpu_s": cpu,
                                                         "x_pytorch": ratio}  # fmt: skip
                print(f"{k:20s} {wall:8.3f} {cpu:7.2f} {ratio:26.2f}x")
    if args.json:
        atomic_write_json(report, args.json)
    return 0


def _ort_version() -> str:
    import onnxruntime  # noqa: PLC0415  (optional dependency, imported by the runtime anyway)

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
