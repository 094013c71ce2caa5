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
ID nets). Weights are random; to get a realistic number of persons, every image is made to
yield exactly ``--persons`` detections (score threshold 0 and ``TEST.DETECTIONS_PER_IMAGE``),
so the box head sees the configured 300 proposals and the identification nets ``--persons`` RoIs.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated``; on the CPU, the peak resident set
size of this process during the timed model (``VmHWM``, reset through ``/proc/self/clear_refs``
before each model; it includes the weights and the Python runtime).
Timings on a shared machine are noisy: the median of ``--iters`` runs is reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from typing import Callable, Dict, List, Tuple

import torch

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
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_fn(fn: Callable[[], object], device: str, warmup: int, iters: int) -> List[float]:
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t)
    return times


class StageTimer:
    """Wall time spent inside chosen submodules (forward pre/post hooks), per call of the model."""

    def __init__(self, model: torch.nn.Module, device: str):
        self.totals: Dict[str, float] = defaultdict(float)
        self.device = device
        self._handles = []
        rh = model.roi_heads
        parts = {"rpn": model.proposal_generator, "box branch": rh.box_head, "id pooler": rh.id_pooler, "id nets": rh.id_head}
        parts["box branch pooler"] = rh.box_pooler
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(os.path.dirname(HERE), "configs", "Base-PersonSearch.yaml"))
    parser.add_argument("--sizes", nargs="+", default=["960x640", "1500x900"], help="WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--persons", type=int, default=10, help="detections per image")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-ids", type=int, default=482, help="ID classifier size (PRW: 482)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-component timing pass")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dev = args.device
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"device: {name}; torch {torch.__version__}; config {os.path.relpath(args.config)}; "
          f"{args.persons} detections/image; median of {args.iters} (after {args.warmup} warm-up)")

    models = {"baseline": build(args.config, False, args.persons, dev, args.num_ids),
              "mrfp": build(args.config, True, args.persons, dev, args.num_ids)}
    rows = []
    for size in args.sizes:
        w, h = parse_size(size)
        g = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        inputs = [{"image": image.to(dev), "height": h, "width": w}]
        res: Dict[str, Tuple[float, float]] = {}

        m = models["mrfp"]
        with torch.no_grad():
            tensor = m.preprocess_image(inputs).tensor
        reset_peak(dev)
        t_floor = time_fn(lambda: m.backbone(tensor), dev, args.warmup, args.iters)
        res["floor"] = (statistics.median(t_floor), peak_mib(dev))
        n_det = {}
        for key in ("baseline", "mrfp"):
            model = models[key]
            reset_peak(dev)
            t = time_fn(lambda: model(inputs), dev, args.warmup, args.iters)
            res[key] = (statistics.median(t), peak_mib(dev))
            with torch.no_grad():
                n_det[key] = len(model(inputs)[0]["instances"])
        print(f"\n== {w}x{h}  (detections: baseline {n_det['baseline']}, mrfp {n_det['mrfp']})")
        print(f"{'':10s} {'sec/img':>9s} {'img/s':>7s} {'x floor':>8s} {'peak MiB':>9s}")
        for key in ("floor", "baseline", "mrfp"):
            sec, mem = res[key]
            print(f"{key:10s} {sec:9.3f} {1 / sec:7.2f} {sec / res['floor'][0]:8.2f} {mem:9.0f}")
        over = res["mrfp"][0] / res["baseline"][0] - 1
        print(f"MRFP over baseline: {100 * over:+.1f}%")
        if not args.no_breakdown:
            timer = StageTimer(models["mrfp"], dev)
            time_fn(lambda: models["mrfp"](inputs), dev, 0, 1)
            timer.remove()
            parts = ", ".join(f"{k} {v:.3f}s" for k, v in timer.totals.items())
            print(f"mrfp breakdown (one run): floor ~{res['floor'][0]:.3f}s, {parts}")
        rows.append((size, res, over))

    print("\nsummary: size, mrfp/floor, baseline/floor, mrfp/baseline-1, mrfp peak MiB")
    for size, res, over in rows:
        print(f"  {size}: {res['mrfp'][0] / res['floor'][0]:.2f}x, {res['baseline'][0] / res['floor'][0]:.2f}x, "
              f"{100 * over:+.1f}%, {res['mrfp'][1]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
