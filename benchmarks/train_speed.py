#!/usr/bin/env python
"""Training throughput: STL Re-ID pretraining (images/s, share of time waiting for data) and
person-search training (seconds per iteration), on the synthetic data set, in one run.

    python benchmarks/train_speed.py [--threads 2] [--iters 30] \
        [--reid-config configs/STL/synthetic.yaml]
        [--ps-config configs/synthetic/person_search.yaml]

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


def timed_steps(trainer, iters: int, warmup: int) -> tuple:
    """Run ``warmup + iters`` training steps; (seconds of the last ``iters``, seconds of them
    spent waiting for data, from the trainer's ``data_time`` metric)."""
    with EventStorage() as storage:
        trainer.storage = storage
        for i in range(warmup + iters):
            if i == warmup:
                start = time.perf_counter()
            storage.iter = trainer.iter = i
            trainer.run_step()
        total = time.perf_counter() - start
        data = sum(v for v, it in storage.history("data_time").values() if it >= warmup)
    return total, data


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--reid-config", default=os.path.join(REPO, "configs", "STL", "synthetic.yaml")
    )
    parser.add_argument(
        "--ps-config", default=os.path.join(REPO, "configs", "synthetic", "person_search.yaml")
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

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
