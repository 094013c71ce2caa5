#!/usr/bin/env python
"""Training throughput: STL Re-ID pretraining (images/s, share of time waiting for data) and
person-search training (seconds per iteration), on the synthetic data set, in one run.

    python benchmarks/train_speed.py [--threads 2] [--iters 30] \
        [--reid-config configs/STL/synthetic.yaml]
        [--ps-config configs/synthetic/person_search.yaml]

    python benchmarks/train_speed.py --device cuda [--amp both|on|off] [--ims-per-batch 16] \
        [--paper-config configs/Base-PersonSearch.yaml] [--json FILE] [--opts KEY VALUE ...]

With ``--device cuda`` (or ``--paper``) it times the person-search model at the paper's
configuration instead: ``--paper-config`` (ResNet50-IBN-a + MRFP, 16 images per iteration,
640/960 resize rule, 300 test / 2000 train proposals) on the synthetic training set (frames resized
by the config's rule to ~576x960, the size of PRW's 960x540 training inputs), with and without
``SOLVER.AMP.ENABLED`` (Detectron2's ``AMPTrainer``), and prints seconds per iteration, images/s
and the peak GPU memory. On the CPU that path runs without AMP (``--ims-per-batch`` and
``--iters`` small: a check that the code path works, not a figure).

Each config runs with its own loader settings (``DATALOADER.NUM_WORKERS``): the figure is what a
user of that config gets. Target: data waiting under 10% of the pretraining time on 2 cores.
The first ``--warmup`` iterations are not timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from detectron2.utils.events import EventStorage  # noqa: E402

import stl_search  # noqa: E402,F401  (registers the model and data sets)
from stl_search.data.reid.build import build_reid_train_loader  # noqa: E402
from stl_search.engine.setup import load_config  # noqa: E402
from stl_search.engine.trainer import PersonSearchTrainer  # noqa: E402
from stl_search.reid.trainer import (  # noqa: E402
    ReIDTrainer,
    build_reid_model,
    build_reid_optimizers,
    load_reid_train_set,
)
from stl_search.utils.cli import HelpFormatter  # noqa: E402
from stl_search.utils.io import atomic_write_json  # noqa: E402


def timed_steps(trainer, iters: int, warmup: int) -> tuple:
    """Run ``warmup + iters`` training steps; (seconds of the last ``iters``, seconds of them
    spent waiting for data, from the trainer's ``data_time`` metric)."""
    with EventStorage() as storage:
        trainer.storage = storage
        for i in range(warmup + iters):
            if i == warmup:
                _sync()
                start = time.perf_counter()
            storage.iter = trainer.iter = i
            trainer.run_step()
        _sync()
        total = time.perf_counter() - start
        data = sum(v for v, it in storage.history("data_time").values() if it >= warmup)
    return total, data


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def paper_training_speed(
    config: str, device: str, amp: bool, ims_per_batch: int, iters: int, warmup: int, opts=()
) -> dict:
    """Seconds per iteration and images/s of person-search training at ``config`` (+ ``opts``,
    KEY VALUE ...) on the synthetic training set, with ``SOLVER.AMP.ENABLED = amp``."""
    cfg = load_config(
        config,
        [
            "OUTPUT_DIR", os.path.join(REPO, "output", "bench_train_speed_paper"),
            "MODEL.DEVICE", device,
            "MODEL.WEIGHTS", "",
            "SOLVER.AMP.ENABLED", str(amp),
            "SOLVER.IMS_PER_BATCH", str(ims_per_batch),
            "DATASETS.TRAIN", "('synthetic_train',)",
            "DATASETS.TEST", "()",
            "DATASETS.QUERY", "()",
            "DATALOADER.NUM_WORKERS", "0" if device == "cpu" else "4",
            "SEED", "0",
            *opts,
        ],
    )  # fmt: skip
    cfg.freeze()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer = PersonSearchTrainer(cfg)
    total, data = timed_steps(trainer, iters, warmup)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {
        "amp": amp,
        "s_per_iter": total / iters,
        "images_per_s": iters * ims_per_batch / total,
        "images_per_iter": ims_per_batch,
        "data_share": data / total,
        "peak_gib": peak,
    }


def reid_throughput(config: str, iters: int, warmup: int) -> dict:
    """Images/s and data-wait share of STL step 1 training steps."""
    cfg = load_config(config, ["MODEL.DEVICE", "cpu"])  # a CPU benchmark (torch threads)
    cfg.freeze()
    crops, labels, num_classes = load_reid_train_set(cfg)
    model = build_reid_model(cfg, num_classes)
    optimizer, center_optimizer = build_reid_optimizers(cfg, model)
    trainer = ReIDTrainer(
        model, build_reid_train_loader(cfg, crops, labels, seed=0), optimizer, center_optimizer
    )
    batch = cfg.REID.SAMPLER.P * cfg.REID.SAMPLER.K
    total, data = timed_steps(trainer, iters, warmup)
    return {
        "images_per_s": iters * batch / total,
        "s_per_iter": total / iters,
        "data_share": data / total,
        "batch": batch,
        "workers": cfg.DATALOADER.NUM_WORKERS,
        "crop": tuple(cfg.REID.INPUT.SIZE),
    }


def person_search_iteration(config: str, iters: int, warmup: int) -> dict:
    """Seconds per person-search training iteration (forward, backward, step)."""
    out_dir = os.path.join(REPO, "output", "bench_train_speed")
    cfg = load_config(config, ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", out_dir])
    cfg.freeze()
    trainer = PersonSearchTrainer(cfg)
    total, data = timed_steps(trainer, iters, warmup)
    return {
        "s_per_iter": total / iters,
        "images_per_iter": cfg.SOLVER.IMS_PER_BATCH,
        "data_share": data / total,
    }


def paper_mode(args) -> None:
    cuda = args.device.startswith("cuda")
    settings = {"both": [False, True], "on": [True], "off": [False]}[args.amp]
    if not cuda and True in settings:
        print("AMP needs CUDA (SOLVER.AMP.ENABLED): timing without AMP only")
        settings = [False]
    name = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device: {name}; torch {torch.__version__}; "
        f"{os.path.relpath(args.paper_config, REPO)}, {args.ims_per_batch} images/iter, "
        f"synthetic training set; {args.iters} timed iterations after {args.warmup}"
    )
    rows = []
    for amp in settings:
        r = paper_training_speed(
            args.paper_config,
            args.device,
            amp,
            args.ims_per_batch,
            args.iters,
            args.warmup,
            args.opts,
        )
        rows.append(r)
        peak = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
        print(
            f"AMP {'on ' if amp else 'off'}: {r['s_per_iter']:.3f} s/iter, "
            f"{r['images_per_s']:.1f} images/s, waiting for data {100 * r['data_share']:.1f}%"
            f"{peak}"
        )
    if args.json:
        atomic_write_json({"device": name, "torch": torch.__version__, "rows": rows}, args.json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (none: torch's)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument(
        "--reid-config",
        default=os.path.join(REPO, "configs", "STL", "synthetic.yaml"),
        help="the Re-ID pretraining config",
    )
    parser.add_argument(
        "--ps-config",
        default=os.path.join(REPO, "configs", "synthetic", "person_search.yaml"),
        help="the person-search config",
    )
    parser.add_argument("--device", default="cpu", help="cuda: the paper-configuration mode")
    parser.add_argument("--paper", action="store_true", help="paper-configuration mode")
    parser.add_argument(
        "--amp", default="both", choices=["both", "on", "off"], help="paper mode: AMP rows"
    )
    parser.add_argument(
        "--ims-per-batch", type=int, default=16, help="paper mode: images per iteration"
    )
    parser.add_argument(
        "--paper-config",
        default=os.path.join(REPO, "configs", "Base-PersonSearch.yaml"),
        help="paper mode: the person-search config",
    )
    parser.add_argument("--json", default="", help="write the paper-mode figures here")
    parser.add_argument("--opts", nargs="*", default=[], help="KEY VALUE ... (paper mode)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.paper or args.device.startswith("cuda"):
        paper_mode(args)
        return
    print(f"torch threads: {torch.get_num_threads()}, device: cpu")
    r = reid_throughput(args.reid_config, args.iters, args.warmup)
    print(
        f"STL Re-ID pretraining ({os.path.relpath(args.reid_config, REPO)}; "
        f"crops {r['crop'][0]}x{r['crop'][1]}, "
        f"batch {r['batch']}, {r['workers']} loader workers): {r['images_per_s']:.1f} images/s, "
        f"{r['s_per_iter']:.3f} s/iter, waiting for data {100 * r['data_share']:.1f}% "
        f"(target < 10%: {'met' if r['data_share'] < 0.10 else 'MISSED'})"
    )
    p = person_search_iteration(args.ps_config, args.iters, args.warmup)
    print(
        f"person-search training ({os.path.relpath(args.ps_config, REPO)}; "
        f"{p['images_per_iter']} images/iter): "
        f"{p['s_per_iter']:.3f} s/iter, waiting for data {100 * p['data_share']:.1f}%"
    )


if __name__ == "__main__":
    main()
