"""STL step 1 on Detectron2's training engine: Re-ID pretraining of the whole ResNet-IBN-a.

Paper 3.1 / 4.3: crops of the training scenes, class-aware P x K batches (with the triplet loss),
``L = L_id + L_tri + lambda * L_center``, Adam (lr 3.5e-4, weight decay 5e-4), linear warm-up from
3.5e-5 over 10 epochs, x0.1 at epochs 40 and 70, 120 epochs. Epochs are converted to iterations
from the crop count (``REID.SOLVER.ITERS_PER_EPOCH``, default ``crops // (P * K)``).

Engine: :class:`ReIDTrainer` is Detectron2's ``SimpleTrainer`` plus the centre optimiser step;
hooks ``IterationTimer``, ``LRScheduler``, ``PeriodicCheckpointer`` (atomic; model + Adam + centre
SGD + LR scheduler + iteration + data seed), ``EvalHook`` (Re-ID mAP / rank-k) and
``PeriodicWriter`` (``CommonMetricPrinter`` with ETA, ``metrics.json``). ``resume=True`` continues
from ``OUTPUT_DIR/last_checkpoint``; the data stream is a function of (seed, iteration), so the
resumed run trains on exactly the batches the killed one would have. At the end, the model is
evaluated and exported for the person-search model (STL step 2, ``OUTPUT_DIR/STL.EXPORT_NAME``).
Its last evaluation goes to ``OUTPUT_DIR/reid_metrics.json``; an ``eval_only`` run writes its own
to ``OUTPUT_DIR/eval/reid_metrics.json``, as ``train_net.py --eval-only`` does.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.engine import SimpleTrainer, hooks
from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter
from fvcore.common.param_scheduler import MultiStepParamScheduler
from torch.nn.parallel import DistributedDataParallel

from ..compat import create_ddp_model
from ..data.reid.build import build_reid_test_loader, build_reid_train_loader
from ..data.reid.crops import ReIDCropDataset, build_reid_records, build_reid_test_records
from ..data.resumable import DataStreamSeed
from ..utils.checkpoint import AtomicCheckpointer
from ..utils.io import atomic_write_json
from ..utils.output_dir import EVAL_ONLY_DIR, write_run_config
from .evaluation import extract_features, reid_metrics
from .model import ReIDNet
from .stl_init import export_for_person_search, save_person_search_init

__all__ = [
    "ReIDTrainer",
    "build_reid_lr_scheduler",
    "build_reid_optimizers",
    "evaluate_reid",
    "iters_per_epoch",
    "load_reid_test_set",
    "load_reid_train_set",
    "run_pretraining",
]

logger = logging.getLogger(__name__)

#: ReIDNet parts that are training state only (unused by Re-ID evaluation and by the export).
REID_TRAINING_ONLY = ("classifier.", "center_loss.")
#: ReIDNet parts an ImageNet initialisation (``convert_imagenet --for reid``) leaves as built.
REID_UNINITIALISED = ("bnneck.",) + REID_TRAINING_ONLY


class ReIDTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose step also updates the centre-loss centres with their own SGD.

    The centres' gradient is divided by lambda (``REID.LOSS.CENTER_WEIGHT``) before their step,
    so that their update ignores the loss weight (BoT); the main optimiser never sees them.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader: Any,
        optimizer: torch.optim.Optimizer,
        center_optimizer: Optional[torch.optim.Optimizer] = None,
    ):
        super().__init__(model, data_loader, optimizer)
        self.center_optimizer = center_optimizer

    def run_step(self) -> None:
        assert self.model.training, "[ReIDTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        loss_dict = self.model(data)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.center_optimizer is not None:
            self.center_optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()
        if self.center_optimizer is not None:
            net = _unwrap(self.model)
            net.center_loss.rescale_grad(net.center_weight)
            self.center_optimizer.step()


def _unwrap(model: torch.nn.Module) -> ReIDNet:
    return model.module if isinstance(model, DistributedDataParallel) else model


# ---- data -------------------------------------------------------------------------------------
def _crop_dataset(cfg: CfgNode, records: List[dict], tag: str) -> Any:
    """``ReIDCropDataset`` of ``records`` at ``REID.INPUT.SIZE`` in ``INPUT.FORMAT`` channel order;
    with ``REID.INPUT.CACHE_CROPS`` the crops are cut once into ``OUTPUT_DIR/crop_cache/<tag>.npy``
    (by the main process first, then memory-mapped by all)."""
    size = tuple(cfg.REID.INPUT.SIZE)
    if not cfg.REID.INPUT.CACHE_CROPS:
        return ReIDCropDataset(records, size, image_format=cfg.INPUT.FORMAT)
    h, w = size
    path = os.path.join(cfg.OUTPUT_DIR, "crop_cache", f"{tag}_{h}x{w}_{cfg.INPUT.FORMAT}.npy")
    if comm.is_main_process():
        ReIDCropDataset(records, size, image_format=cfg.INPUT.FORMAT, cache_file=path)
    comm.synchronize()
    return ReIDCropDataset(records, size, image_format=cfg.INPUT.FORMAT, cache_file=path)


def load_reid_train_set(cfg: CfgNode) -> Tuple[Any, List[int], int]:
    """Crops of the labeled persons of ``DATASETS.TRAIN`` → ``(crop dataset, label per crop,
    number of classes)``.

    Labels are the splits' ``person_id``, offset so that several training splits do not collide.
    """
    records: List[dict] = []
    offset = 0
    for name in cfg.DATASETS.TRAIN:
        split = [
            dict(r, person_id=int(r["person_id"]) + offset)
            for r in build_reid_records(name)
            if int(r["person_id"]) >= 0
        ]
        if split:
            offset = max(r["person_id"] for r in split) + 1
        records.extend(split)
    if not records:
        raise ValueError(f"no labeled person crops in DATASETS.TRAIN={list(cfg.DATASETS.TRAIN)}")
    labels = [int(r["person_id"]) for r in records]
    return (
        _crop_dataset(cfg, records, "train_" + "+".join(cfg.DATASETS.TRAIN)),
        labels,
        max(labels) + 1,
    )


def load_reid_test_set(cfg: CfgNode) -> Dict[str, Any]:
    """Query crops of ``DATASETS.QUERY[0]`` and gallery crops of ``DATASETS.TEST[0]``, with
    their records."""
    if not cfg.DATASETS.QUERY or not cfg.DATASETS.TEST:
        raise ValueError(
            "Re-ID evaluation needs DATASETS.QUERY and DATASETS.TEST (query / gallery splits)"
        )
    query_name, gallery_name = cfg.DATASETS.QUERY[0], cfg.DATASETS.TEST[0]
    query, gallery = build_reid_test_records(query_name, gallery_name)
    return {
        "query": (_crop_dataset(cfg, query, "query_" + query_name), query),
        "gallery": (_crop_dataset(cfg, gallery, "gallery_" + gallery_name), gallery),
    }


def iters_per_epoch(cfg: CfgNode, num_crops: int) -> int:
    """``REID.SOLVER.ITERS_PER_EPOCH``, or ``num_crops // (P * K)`` (at least 1) when it is 0."""
    if cfg.REID.SOLVER.ITERS_PER_EPOCH > 0:
        return int(cfg.REID.SOLVER.ITERS_PER_EPOCH)
    return max(1, num_crops // (cfg.REID.SAMPLER.P * cfg.REID.SAMPLER.K))


# ---- optimisation -----------------------------------------------------------------------------
def build_reid_optimizers(
    cfg: CfgNode, model: ReIDNet
) -> Tuple[torch.optim.Optimizer, Optional[torch.optim.Optimizer]]:
    """Adam (``REID.SOLVER``) over everything but the centres; SGD (``REID.LOSS.CENTER_LR``) over
    the centres."""
    s = cfg.REID.SOLVER
    if s.OPTIMIZER.upper() == "ADAM":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            model.main_parameters(), lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY
        )
    elif s.OPTIMIZER.upper() == "SGD":
        optimizer = torch.optim.SGD(
            model.main_parameters(), lr=s.BASE_LR, momentum=0.9, weight_decay=s.WEIGHT_DECAY
        )
    else:
        raise ValueError(f"REID.SOLVER.OPTIMIZER must be ADAM or SGD, got {s.OPTIMIZER!r}")
    center = None
    if model.center_loss is not None:
        center = torch.optim.SGD(model.center_loss.parameters(), lr=cfg.REID.LOSS.CENTER_LR)
    return optimizer, center


def build_reid_lr_scheduler(
    cfg: CfgNode, optimizer: torch.optim.Optimizer, epoch_iters: int, max_iter: int
) -> LRMultiplier:
    """Per-iteration LR multiplier: linear warm-up from ``WARMUP_FACTOR`` over ``WARMUP_EPOCHS``,
    then x ``GAMMA`` at each of ``STEPS_EPOCHS`` (steps past the end are ignored)."""
    s = cfg.REID.SOLVER
    milestones = [
        int(e * epoch_iters) for e in s.STEPS_EPOCHS if 0 < int(e * epoch_iters) < max_iter
    ]
    sched = MultiStepParamScheduler(
        values=[s.GAMMA**i for i in range(len(milestones) + 1)],
        milestones=milestones,
        num_updates=max_iter,
    )
    warmup = min(int(s.WARMUP_EPOCHS * epoch_iters), max_iter - 1)
    if warmup > 0:
        sched = WarmupParamScheduler(sched, s.WARMUP_FACTOR, warmup / max_iter, "linear")
    return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)


# ---- evaluation -------------------------------------------------------------------------------
def evaluate_reid(
    cfg: CfgNode, model: torch.nn.Module, test_set: Optional[Dict[str, Any]] = None
) -> Dict[str, Dict[str, float]]:
    """Re-ID mAP / rank-k (%) of ``model`` on the crop test set; ``{"reid": {...}}`` on the main
    process, ``{}`` elsewhere (every process must call it)."""
    test_set = test_set if test_set is not None else load_reid_test_set(cfg)
    feats = {}
    for part in ("query", "gallery"):
        crops, records = test_set[part]
        labels = [int(r["identity"]) for r in records]
        feats[part] = extract_features(model, build_reid_test_loader(cfg, crops, labels))
    if not comm.is_main_process():
        return {}
    (_, q), (_, g) = test_set["query"], test_set["gallery"]
    metrics = reid_metrics(
        feats["query"].numpy(),
        feats["gallery"].numpy(),
        [r["identity"] for r in q],
        [r["identity"] for r in g],
        [r.get("camera_id", -1) for r in q],
        [r.get("camera_id", -1) for r in g],
        [r["file_name"] for r in q],
        [r["file_name"] for r in g],
    )
    logger.info(
        "Re-ID evaluation (%d queries, %d gallery crops): mAP %.2f, rank-1 %.2f",
        len(q),
        len(g),
        metrics["mAP"],
        metrics["rank1"],
    )
    return {"reid": metrics}


# ---- the whole step ---------------------------------------------------------------------------
def build_reid_model(cfg: CfgNode, num_classes: int) -> ReIDNet:
    """``ReIDNet`` on ``MODEL.DEVICE``."""
    model = ReIDNet(cfg, num_classes=num_classes)
    return model.to(torch.device(cfg.MODEL.DEVICE))


def _data_seed(cfg: CfgNode) -> int:
    """``SEED``, or one random seed shared by all processes (kept in the checkpoints: resume)."""
    return int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed())


def run_pretraining(
    cfg: CfgNode,
    resume: bool = False,
    eval_only: bool = False,
    *,
    train_set: Optional[Tuple[Any, List[int], int]] = None,
    test_set: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Train (or with ``eval_only`` just evaluate) the Re-ID network of ``cfg``; export at the end.

    ``train_set`` / ``test_set`` replace :func:`load_reid_train_set` / :func:`load_reid_test_set`
    (same formats; for tests and custom crop sets). Returns the last Re-ID evaluation
    (``{"reid": {...}}`` on the main process, ``{}`` elsewhere).
    """
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    crops, labels, num_classes = train_set if train_set is not None else load_reid_train_set(cfg)
    model = build_reid_model(cfg, num_classes)
    optimizer, center_optimizer = build_reid_optimizers(cfg, model)
    epoch_iters = iters_per_epoch(cfg, len(crops))
    max_iter = int(cfg.REID.SOLVER.MAX_EPOCHS * epoch_iters)
    scheduler = build_reid_lr_scheduler(cfg, optimizer, epoch_iters, max_iter)
    seed = DataStreamSeed(_data_seed(cfg))
    checkpointables = {"optimizer": optimizer, "scheduler": scheduler, "data": seed}
    if center_optimizer is not None:
        checkpointables["center_optimizer"] = center_optimizer
    checkpointer = AtomicCheckpointer(
        model,
        cfg.OUTPUT_DIR,
        init_may_miss=REID_UNINITIALISED,
        load_may_miss=REID_TRAINING_ONLY,
        allow_partial_weights=cfg.MODEL.ALLOW_PARTIAL_WEIGHTS,
        **checkpointables,
    )
    if eval_only and not (resume and checkpointer.has_checkpoint()):
        if not cfg.MODEL.WEIGHTS:
            raise ValueError("--eval-only: set MODEL.WEIGHTS to a Re-ID checkpoint to evaluate")
        checkpoint = checkpointer.load(cfg.MODEL.WEIGHTS, checkpointables=[])  # a trained model
    else:
        checkpoint = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
        if resume and not eval_only and comm.is_main_process() and cfg.OUTPUT_DIR:
            write_run_config(cfg)  # setup leaves config.yaml alone until the checkpoint loads
    start_iter = (
        checkpoint.get("iteration", -1) + 1 if resume and checkpointer.has_checkpoint() else 0
    )

    test_set = test_set if test_set is not None else load_reid_test_set(cfg)
    if eval_only:
        results = evaluate_reid(cfg, model, test_set)
        _write_results(os.path.join(cfg.OUTPUT_DIR, EVAL_ONLY_DIR), results)
        return results

    logger.info(
        "Re-ID pretraining: %d crops, %d identities, %d iterations/epoch, %d iterations%s",
        len(crops),
        num_classes,
        epoch_iters,
        max_iter,
        f" (resuming at {start_iter})" if start_iter else "",
    )
    data_loader = build_reid_train_loader(cfg, crops, labels, seed=seed.seed, start_iter=start_iter)
    ddp_model = create_ddp_model(model, broadcast_buffers=False)
    trainer = ReIDTrainer(ddp_model, data_loader, optimizer, center_optimizer)

    last: Dict[str, Any] = {}

    def _eval() -> Dict[str, Dict[str, float]]:
        results = evaluate_reid(cfg, model, test_set)
        last.clear()
        last.update(results)
        return results

    main = comm.is_main_process()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(optimizer, scheduler),
            hooks.PeriodicCheckpointer(
                checkpointer, max(1, int(cfg.REID.SOLVER.CHECKPOINT_PERIOD_EPOCHS * epoch_iters))
            )
            if main
            else None,
            hooks.EvalHook(int(cfg.REID.TEST_PERIOD_EPOCHS * epoch_iters), _eval),
            hooks.PeriodicWriter(
                [
                    CommonMetricPrinter(max_iter),
                    JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json")),
                ],
                period=cfg.REID.LOG_PERIOD,
            )
            if main
            else None,
        ]
    )
    trainer.train(start_iter, max_iter)

    if main:
        _write_results(cfg.OUTPUT_DIR, last)
        if cfg.STL.EXPORT_NAME:
            path = os.path.join(cfg.OUTPUT_DIR, cfg.STL.EXPORT_NAME)
            exported = export_for_person_search(
                model.state_dict(), mrfp_neck=cfg.STL.EXPORT_MRFP_NECK
            )
            save_person_search_init(exported, path, reid_input_size=cfg.REID.INPUT.SIZE)
            logger.info(
                "STL step 2: person-search initialisation (%d tensors) written to %s",
                len(exported),
                path,
            )
    comm.synchronize()
    return last


def _write_results(folder: str, results: Dict[str, Any]) -> None:
    """``reid_metrics.json`` in ``folder``: ``OUTPUT_DIR`` for a training run, its
    :data:`EVAL_ONLY_DIR` for ``eval_only`` (the training run's results stay as they were)."""
    if comm.is_main_process() and results:
        atomic_write_json(results, os.path.join(folder, "reid_metrics.json"))
