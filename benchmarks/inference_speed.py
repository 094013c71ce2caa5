#!/usr/bin/env python
"""Inference speed and peak memory of the person-search model (issue 5; paper Table 7).

    python benchmarks/inference_speed.py [--threads 2] [--sizes 960x640 1500x900] [--persons 10]
        [--iters 5] [--warmup 2] [--config configs/Base-PersonSearch.yaml] [--device cpu|cuda]

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

Noise: on a shared machine the load changes from second to second. The three measurements are
therefore *interleaved*: each round times floor, baseline and MRFP back to back (order rotated
between rounds), and the ratios are medians of the per-round ratios. Wall time is what a user
waits; process CPU time (all threads) is printed beside it because it is less sensitive to
other processes taking the cores (it still counts OpenMP spin-waiting).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from typing import Callable, Dict, List, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

import stl_search.modeling  # noqa: E402,F401  (registers the model)
from stl_search.config import add_stl_search_config  # noqa: E402


def parse_size(s: str) -> Tuple[int, int]:
    w, h = s.lower().split("x")
    return int(w), int(h)


def build(config: str, mrfp: bool, persons: int, device: str, num_ids: int) -> torch.nn.Module:
    cfg = add_stl_search_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.MRFP.ENABLED = mrfp
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = num_ids
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = persons
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn: Callable[[], object], device: str) -> Tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    _sync(device)
    w, c = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w, time.process_time() - c


def interleaved(fns: Dict[str, Callable[[], object]], device: str, warmup: int, rounds: int):
    """Per-key lists of (wall, cpu) from ``rounds`` rounds that run every fn once, order rotated."""
    keys = list(fns)
    out: Dict[str, List[Tuple[float, float]]] = {k: [] for k in keys}
    with torch.no_grad():
        for k in keys:
            for _ in range(warmup):
                fns[k]()
        for r in range(rounds):
            order = keys[r % len(keys) :] + keys[: r % len(keys)]
            for k in order:
                out[k].append(measure(fns[k], device))
    return out


def gmacs(fn: Callable[[], object]) -> float:
    """Multiply-accumulates (10^9) of one call, as counted by ``torch.utils.flop_counter``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def peak_of(fn: Callable[[], object], device: str) -> float:
    reset_peak(device)
    with torch.no_grad():
        fn()
    return peak_mib(device)


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
            _sync(self.device)
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name):
        def hook(mod, inp, out):
            _sync(self.device)
            self.totals[name] += time.perf_counter() - self._start[name]

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", default=os.path.join(os.path.dirname(HERE), "configs", "Base-PersonSearch.yaml")
    )
    parser.add_argument("--sizes", nargs="+", default=["960x640", "1500x900"], help="WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--persons", type=int, default=10, help="detections per image")
    parser.add_argument("--iters", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-ids", type=int, default=482, help="ID classifier size (PRW: 482)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the per-component timing pass"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
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
