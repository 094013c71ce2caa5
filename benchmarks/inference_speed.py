#!/usr/bin/env python
"""Inference speed and peak memory of the person-search model (paper Table 7).

    python benchmarks/inference_speed.py [--threads 2] [--sizes 960x640 1500x900] [--persons 10]
        [--iters 5] [--warmup 2] [--config configs/Base-PersonSearch.yaml] [--device cpu|cuda]
        [--side-by-side] [--fast] [--seqnet DIR] [--batch N] [--amp float16|bfloat16]
        [--opts KEY VALUE ...] [--profile] [--json FILE]

For each input size (width x height, the image fed to the network as is) it times, in one run:

- ``floor``: the base nets alone (normalised image -> stem..res3), the cost this design cannot go
  below since every other part runs on their output;
- ``baseline``: the full model with single-level RoI pooling (``MODEL.MRFP.ENABLED False``);
- ``mrfp``: the full model with MRFP;

and prints seconds per image, images per second, the ratios end-to-end / floor and MRFP /
baseline, peak memory, and where the time of the MRFP model goes (RPN, box branch, ID pooler,
ID nets). It also counts each model's multiply-accumulates (``torch.utils.flop_counter``: convs
and matmuls, exact and free of timing noise): the MRFP neck's share of the baseline's work is the
overhead that no implementation of this design can go below. Weights are random; to get a
realistic number of persons, every image is made to yield exactly ``--persons`` detections
(score threshold 0 and ``TEST.DETECTIONS_PER_IMAGE``), so the box head sees the configured 300
proposals and the identification nets ``--persons`` RoIs.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated``; on the CPU, the peak resident set
size of this process while the model runs (``VmHWM``, reset through ``/proc/self/clear_refs``
before each model; it includes both models' weights and the Python runtime).

Side by side (``--side-by-side``, implied by ``--fast`` and ``--seqnet DIR``): instead of the three
rows above, it times in
interleaved rounds the config's model on the reference path ("reference path": every piece of the
fast path forced off), the same model on the inference fast path ("fast path":
``TEST.FAST_PATH.FOLD_BN``, ``CHANNELS_LAST`` and the sync-free post-processing, the paper configs'
default, on CUDA also ``TF32`` and ``CUDNN_BENCHMARK``), with ``--fast`` the named fast variant (the
128-wide RPN conv of ``configs/*/fast_stl_mrfp.yaml``, on the fast path), and with ``--seqnet DIR``
SeqNet's gallery inference from a local copy of its source (``benchmarks/seqnet_reference.py``:
random weights, the same image at the same size, the same forced number of persons), and prints each
row's throughput and its ratio to SeqNet's (median of the per-round ratios). ``--batch N`` feeds N
copies of the image per call (images/s = N / seconds per call), ``--amp float16|bfloat16`` runs
every row under autocast (``TEST.AMP`` for ours), ``--opts KEY VALUE ...`` overrides config keys of
every row of ours (``--opts TEST.FAST_PATH.COMPILE default`` compiles the base nets of every row but
the reference path; the warm-up rounds absorb the compilation; ``--opts
TEST.FAST_PATH.STATIC_SHAPES True TEST.FAST_PATH.COMPILE reduce-overhead`` captures the fast
path's whole gallery forward as one CUDA graph), ``--profile`` profiles one more call of each
row (operator calls, host reads; on CUDA kernel and graph launches, syncs, GPU-busy share:
``benchmarks/profile_counts.py``), ``--json FILE`` writes the figures.

Noise: on a shared machine the load changes from second to second. The three measurements are
therefore *interleaved*: each round times floor, baseline and MRFP back to back (order rotated
between rounds), and the ratios are medians of the per-round ratios. Wall time is what a user
waits; process CPU time (all threads) is printed beside it because it is less sensitive to
other processes taking the cores (it still counts OpenMP spin-waiting).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from typing import Callable, Dict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from machine import cpu_line  # noqa: E402  (benchmarks/, on the path as the script's folder)
from profile_counts import profile_counts  # noqa: E402
from seqnet_reference import build_seqnet, seqnet_gallery_call  # noqa: E402
from timing import gmacs, interleaved, measure, parse_size, peak_of, sync  # noqa: E402

import stl_search.modeling  # noqa: E402,F401  (registers the model)
from stl_search.config import add_stl_search_config  # noqa: E402
from stl_search.modeling.fast_path import prepare_inference_model  # noqa: E402
from stl_search.utils.cli import HelpFormatter  # noqa: E402
from stl_search.utils.io import atomic_write_json  # noqa: E402
from stl_search.utils.yaml_config import merge_yaml_config  # noqa: E402

#: The named fast variant (configs/PRW/fast_stl_mrfp.yaml): the RPN's 3x3 conv 128 wide.
FAST_VARIANT_OPTS = ["MODEL.RPN.CONV_DIMS", [128]]
#: The inference fast path (stl_search/modeling/fast_path.py); CUDA adds TF32 and cudnn.benchmark.
FAST_PATH_OPTS = [
    "TEST.FAST_PATH.FOLD_BN", True, "TEST.FAST_PATH.CHANNELS_LAST", True,
    "MODEL.PROPOSAL_GENERATOR.NAME", "SyncFreeRPN", "MODEL.ROI_HEADS.SYNC_FREE_INFERENCE", True,
]  # fmt: skip
FAST_PATH_CUDA_OPTS = ["TEST.FAST_PATH.TF32", True, "TEST.FAST_PATH.CUDNN_BENCHMARK", True]
#: The reference path: every model-changing piece of the fast path off, whatever the config says
#: (configs/Base-PersonSearch.yaml turns FOLD_BN and CHANNELS_LAST on).
REFERENCE_PATH_OPTS = [
    "TEST.FAST_PATH.FOLD_BN", False, "TEST.FAST_PATH.CHANNELS_LAST", False,
    "TEST.FAST_PATH.COMPILE", "", "MODEL.PROPOSAL_GENERATOR.NAME", "RPN",
    "MODEL.ROI_HEADS.SYNC_FREE_INFERENCE", False, "TEST.FAST_PATH.STATIC_SHAPES", False,
]  # fmt: skip


def build(
    config: str, mrfp: bool, persons: int, device: str, num_ids: int, opts: list = ()
) -> torch.nn.Module:
    """The model of ``config`` (+ ``opts``, a flat KEY, VALUE list) with random weights, forced to
    ``persons`` detections per image, prepared for inference (``TEST.FAST_PATH``)."""
    cfg = add_stl_search_config(get_cfg())
    merge_yaml_config(cfg, config)
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.MRFP.ENABLED = mrfp
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = num_ids
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = persons
    cfg.merge_from_list([str(v) if not isinstance(v, str) else v for v in opts])
    torch.manual_seed(0)
    return prepare_inference_model(build_model(cfg).eval(), cfg)


class StageTimer:
    """Wall time spent inside chosen submodules (forward pre/post hooks), per call of the model."""

    def __init__(self, model: torch.nn.Module, device: str):
        self.totals: Dict[str, float] = defaultdict(float)
        self.device = device
        self._handles = []
        rh = model.roi_heads
        parts = {
            "rpn": model.proposal_generator,
            "box pooler": rh.box_pooler,
            "box head": rh.box_head,
            "id pooler (incl. neck)": rh.id_pooler,
            "id nets": rh.id_head,
        }
        for name, mod in parts.items():
            self._handles.append(mod.register_forward_pre_hook(self._pre(name)))
            self._handles.append(mod.register_forward_hook(self._post(name)))
        self._start: Dict[str, float] = {}

    def _pre(self, name):
        def hook(mod, inp):
            sync(self.device)
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name):
        def hook(mod, inp, out):
            sync(self.device)
            self.totals[name] += time.perf_counter() - self._start[name]

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _backend(fn: Callable[[], object], fast: bool, device: str) -> Callable[[], object]:
    """``fn`` run with the CUDA TF32 / cudnn.benchmark settings of its row (process-wide flags,
    set before every call so that interleaved rows do not leak them into each other)."""
    if not device.startswith("cuda"):
        return fn

    def call():
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.allow_tf32 = fast
        torch.backends.cudnn.benchmark = fast
        return fn()

    return call


def _autocast(fn: Callable[[], object], dtype: str, device: str) -> Callable[[], object]:
    if not dtype:
        return fn

    def call():
        with torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, dtype)):
            return fn()

    return call


def _count(out) -> int:
    first = out[0]
    return len(first["instances"] if "instances" in first else first["boxes"])


def compare(args) -> dict:
    """The side-by-side mode (``--side-by-side`` / ``--fast`` / ``--seqnet``): see the module
    docstring."""
    dev = args.device
    cuda = dev.startswith("cuda")
    fast_path = FAST_PATH_OPTS + (FAST_PATH_CUDA_OPTS if cuda else [])
    amp = ["TEST.AMP.ENABLED", True, "TEST.AMP.DTYPE", args.amp] if args.amp else []
    rows = {
        "reference path": list(args.opts) + REFERENCE_PATH_OPTS + amp,
        "fast path": list(args.opts) + fast_path + amp,
    }
    if args.fast:
        rows["fast variant"] = list(args.opts) + FAST_VARIANT_OPTS + fast_path + amp
    models = {
        k: build(args.config, True, args.persons, dev, args.num_ids, o) for k, o in rows.items()
    }
    report = {"device": _device_name(args), "torch": torch.__version__, "batch": args.batch,
              "amp": args.amp or "off", "persons": args.persons, "opts": list(args.opts),
              "sizes": {}}  # fmt: skip
    for size in args.sizes:
        w, h = parse_size(size)
        g = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g).to(dev)
        inputs = [{"image": image, "height": h, "width": w} for _ in range(args.batch)]
        fns = {
            k: _backend(lambda m=m: m(inputs), k != "reference path", dev)
            for k, m in models.items()
        }
        if args.seqnet:
            seqnet = build_seqnet(args.seqnet, h, w, args.persons, dev)
            fns["seqnet"] = _autocast(
                _backend(seqnet_gallery_call(seqnet, [image] * args.batch), False, dev),
                args.amp,
                dev,
            )
        runs = interleaved(fns, dev, args.warmup, args.iters)
        with torch.no_grad():
            dets = {k: _count(f()) for k, f in fns.items()}
        print(f"\n== {w}x{h}, batch {args.batch}, amp {args.amp or 'off'}")
        print(
            f"{'':18s} {'sec/call':>8s} {'img/s':>7s} {'cpu s':>7s} {'x seqnet':>8s} {'dets':>5s}"
        )
        out = {}
        for k in fns:
            wall = statistics.median(x[0] for x in runs[k])
            cpu = statistics.median(x[1] for x in runs[k])
            ratio = (
                statistics.median(s[0] / x[0] for x, s in zip(runs[k], runs["seqnet"]))
                if "seqnet" in runs
                else float("nan")
            )
            out[k] = {"s_per_call": wall, "images_per_s": args.batch / wall, "cpu_s": cpu,
                      "x_seqnet": ratio, "detections": dets[k]}  # fmt: skip
            print(
                f"{k:18s} {wall:8.3f} {args.batch / wall:7.2f} {cpu:7.2f} {ratio:8.2f} {dets[k]:5d}"
            )
        if args.profile:
            for k, f in fns.items():
                counts = profile_counts(f, dev)
                out[k]["profile"] = counts
                print(
                    f"profile {k}: "
                    + ", ".join(
                        f"{n} {v:.3g}" if isinstance(v, float) else f"{n} {v}"
                        for n, v in counts.items()
                    )
                )
        report["sizes"][size] = out
    return report


def _device_name(args) -> str:
    if args.device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{cpu_line()}, {args.threads} threads"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--config",
        default=os.path.join(os.path.dirname(HERE), "configs", "Base-PersonSearch.yaml"),
        help="the model's config (random weights)",
    )
    parser.add_argument("--sizes", nargs="+", default=["960x640", "1500x900"], help="WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--persons", type=int, default=10, help="detections per image")
    parser.add_argument("--iters", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--num-ids", type=int, default=482, help="ID classifier size (PRW: 482)")
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu", help="MODEL.DEVICE")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-part timing")
    parser.add_argument(
        "--side-by-side", action="store_true", help="the reference path beside the fast path"
    )
    parser.add_argument("--fast", action="store_true", help="add the named fast variant's row")
    parser.add_argument("--seqnet", default="", help="a local copy of SeqNet's source: add its row")
    parser.add_argument("--batch", type=int, default=1, help="images per call (side-by-side mode)")
    parser.add_argument("--amp", default="", choices=["", "float16", "bfloat16"], help="TEST.AMP")
    parser.add_argument("--opts", nargs="*", default=[], help="KEY VALUE ... for every model")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="side by side: also profile one call per row (benchmarks/profile_counts.py)",
    )
    parser.add_argument("--json", default="", help="write the side-by-side figures here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.side_by_side or args.fast or args.seqnet:
        print(
            f"device: {_device_name(args)}; torch {torch.__version__}; config "
            f"{os.path.relpath(args.config)} {' '.join(args.opts)}; {args.persons} "
            f"detections/image; medians over {args.iters} interleaved rounds "
            f"(after {args.warmup} warm-up)"
        )
        report = compare(args)
        if args.json:
            atomic_write_json(report, args.json)
        return 0
    dev = args.device
    name = (
        torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {args.threads} threads"
    )
    print(
        f"device: {name}; torch {torch.__version__}; config {os.path.relpath(args.config)}; "
        f"{args.persons} detections/image; medians over {args.iters} interleaved rounds "
        f"(after {args.warmup} warm-up)"
    )

    models = {
        "baseline": build(args.config, False, args.persons, dev, args.num_ids),
        "mrfp": build(args.config, True, args.persons, dev, args.num_ids),
    }
    rows = []
    for size in args.sizes:
        w, h = parse_size(size)
        g = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        inputs = [{"image": image.to(dev), "height": h, "width": w}]
        base_nets = models["mrfp"].backbone
        with torch.no_grad():
            tensor = models["mrfp"].preprocess_image(inputs).tensor
        fns = {
            "floor": lambda: base_nets(tensor),
            "baseline": lambda: models["baseline"](inputs),
            "mrfp": lambda: models["mrfp"](inputs),
        }
        runs = interleaved(fns, dev, args.warmup, args.iters)
        peaks = {k: peak_of(f, dev) for k, f in fns.items()}
        work = {k: gmacs(f) for k, f in fns.items()}
        with torch.no_grad():
            n_det = {k: len(models[k](inputs)[0]["instances"]) for k in ("baseline", "mrfp")}

        def med(key: str, i: int) -> float:
            return statistics.median(x[i] for x in runs[key])

        def ratio(a: str, b: str, i: int) -> float:
            return statistics.median(x[i] / y[i] for x, y in zip(runs[a], runs[b]))

        print(
            f"\n== {w}x{h}  (detections per image: baseline {n_det['baseline']}, "
            f"mrfp {n_det['mrfp']})"
        )
        print(
            f"{'':9s} {'sec/img':>8s} {'img/s':>6s} {'x floor':>8s} {'cpu s':>7s} {'x floor':>8s} "
            f"{'peak MiB':>9s} {'GMAC':>6s}"
        )
        for key in ("floor", "baseline", "mrfp"):
            print(
                f"{key:9s} {med(key, 0):8.3f} {1 / med(key, 0):6.2f} {ratio(key, 'floor', 0):8.2f} "
                f"{med(key, 1):7.2f} {ratio(key, 'floor', 1):8.2f} {peaks[key]:9.0f} "
                f"{work[key]:6.1f}"
            )
        over = (
            ratio("mrfp", "baseline", 0) - 1,
            ratio("mrfp", "baseline", 1) - 1,
            work["mrfp"] / work["baseline"] - 1,
        )
        print(
            f"MRFP over baseline: {100 * over[0]:+.1f}% wall, {100 * over[1]:+.1f}% cpu, "
            f"{100 * over[2]:+.1f}% multiply-accumulates (the design's own lower bound)"
        )
        if not args.no_breakdown:
            timer = StageTimer(models["mrfp"], dev)
            with torch.no_grad():
                wall = measure(fns["mrfp"], dev)[0]
            timer.remove()
            parts = ", ".join(f"{k} {v:.3f}s" for k, v in timer.totals.items())
            print(f"mrfp breakdown (one run, {wall:.3f}s wall): {parts}")
        rows.append(
            (
                size,
                ratio("mrfp", "floor", 0),
                ratio("mrfp", "floor", 1),
                ratio("baseline", "floor", 0),
                over,
                peaks["mrfp"],
            )
        )

    print(
        "\nsummary (wall / cpu): size | mrfp x floor | baseline x floor (wall) | "
        "mrfp over baseline (wall / cpu / MACs) | peak MiB"
    )
    for size, rw, rc, bw, over, peak in rows:
        print(
            f"  {size}: {rw:.2f}x / {rc:.2f}x | {bw:.2f}x | "
            f"{100 * over[0]:+.1f}% / {100 * over[1]:+.1f}% / {100 * over[2]:+.1f}% | {peak:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
