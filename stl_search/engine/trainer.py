"""``PersonSearchTrainer``: Detectron2's ``DefaultTrainer`` for the person-search model.

What it changes from ``DefaultTrainer``, and why:
- checkpoints are written atomically and hold the optimizer state on every Detectron2 version
  (v0.6 does not save it), so ``--resume`` continues with the same momentum;
- the training stream is a pure function of (seed, position) (``stl_search.data.resumable``):
  a resumed run sees exactly the samples the killed run would have seen next;
- DDP also wraps CPU models (``device_ids=None``);
- evaluation runs each gallery split (``DATASETS.TEST``) through detection and its query split
  (``DATASETS.QUERY``, same order) through the model's query mode, then the person-search
  evaluator, and writes the results to ``OUTPUT_DIR/eval_metrics.json`` (atomically; Detectron2's JSONWriter owns ``metrics.json``).
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional

from detectron2.config import CfgNode
from detectron2.data import build_batch_data_loader, get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer, SimpleTrainer
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import print_csv_format
from detectron2.utils import comm

from ..compat import create_ddp_model, replace_trainer_data_loader
from ..data.resumable import PositionSampler, PositionSeededDataset
from ..utils.checkpoint import AtomicCheckpointer
from ..utils.io import atomic_write_json

logger = logging.getLogger(__name__)


class PersonSearchTrainer(DefaultTrainer):
    """Trains and evaluates ``PersonSearchRCNN`` (or any model with the same I/O) from a config."""

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            from detectron2.utils.logger import setup_logger

            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
            raise ValueError("SOLVER.AMP.ENABLED needs CUDA; set it to False with MODEL.DEVICE cpu")
        self.cfg = cfg
        self.data_seed = cfg.SEED if cfg.SEED >= 0 else int(time.time()) % (2**31)

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg, seed=self.data_seed, start_iter=0)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = SimpleTrainer(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())

    # ---- state: iteration, hooks (LR scheduler), optimizer, data stream seed -------------------
    def state_dict(self) -> Dict[str, Any]:
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        ret["data_seed"] = self.data_seed
        return ret

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        self.data_seed = int(state_dict.get("data_seed", self.data_seed))

    def resume_or_load(self, resume: bool = True) -> None:
        """Load ``MODEL.WEIGHTS``, or with ``resume`` the last checkpoint of ``OUTPUT_DIR`` with the
        optimizer, scheduler, iteration and data stream position."""
        super().resume_or_load(resume=resume)
        if self.start_iter > 0:
            loader = self.build_train_loader(
                self.cfg, seed=self.data_seed, start_iter=self.start_iter
            )
            replace_trainer_data_loader(self._trainer, loader)
            logger.info(
                "Resumed at iteration %d (data stream seed %d)", self.start_iter, self.data_seed
            )

    # ---- builders ---------------------------------------------------------------------------
    @classmethod
    def build_train_loader(cls, cfg: CfgNode, seed: int = 0, start_iter: int = 0):
        """Batches of mapped training images; sample ``i * IMS_PER_BATCH + j`` is fixed by ``seed``."""
        from ..data.mapper import PersonSearchDatasetMapper

        dicts = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
        dataset = PositionSeededDataset(dicts, PersonSearchDatasetMapper(cfg, mode="train"), seed)
        sampler = PositionSampler(start=start_iter * cfg.SOLVER.IMS_PER_BATCH)
        return build_batch_data_loader(
            dataset,
            sampler,
            cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str, mode: str = "test"):
        """Gallery (``mode="test"``) or query (``mode="query"``) loader, one image per batch."""
        from ..data.build import build_person_search_test_loader

        return build_person_search_test_loader(cfg, dataset_name, mode)

    @classmethod
    def build_evaluator(
        cls,
        cfg: CfgNode,
        dataset_name: str,
        query_name: Optional[str] = None,
        output_folder: Optional[str] = None,
    ):
        from ..evaluation import PersonSearchEvaluator

        if query_name is None:
            query_name = query_split_for(cfg, dataset_name)
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return PersonSearchEvaluator(cfg, dataset_name, query_name, output_folder)

    @classmethod
    def test(
        cls, cfg: CfgNode, model, evaluators: Optional[List] = None
    ) -> "OrderedDict[str, Any]":
        """Evaluate ``model`` on every (gallery, query) pair of ``DATASETS.TEST`` / ``DATASETS.QUERY``."""
        from ..evaluation import inference_on_person_search

        results: "OrderedDict[str, Any]" = OrderedDict()
        for idx, gallery_name in enumerate(cfg.DATASETS.TEST):
            query_name = query_split_for(cfg, gallery_name)
            evaluator = (
                evaluators[idx]
                if evaluators is not None
                else cls.build_evaluator(cfg, gallery_name, query_name)
            )
            # The evaluator names the split whose queries run (CUHK-SYSU: one of the per-size splits).
            results_i = inference_on_person_search(
                model,
                cls.build_test_loader(cfg, gallery_name, "test"),
                cls.build_test_loader(cfg, evaluator.query_dataset_name, "query"),
                evaluator,
            )
            results[gallery_name] = results_i
            if comm.is_main_process():
                logger.info(
                    "Evaluation results for %s (queries %s) in csv format:",
                    gallery_name,
                    query_name,
                )
                print_csv_format(results_i)
        if len(results) == 1:
            results = list(results.values())[0]
        if comm.is_main_process() and results:
            atomic_write_json(
                {"metrics": results, "weights": cfg.MODEL.WEIGHTS},
                os.path.join(cfg.OUTPUT_DIR, "eval_metrics.json"),
            )
        return results


def query_split_for(cfg: CfgNode, gallery_name: str) -> str:
    """The query split paired with gallery split ``gallery_name`` (same index in DATASETS.QUERY)."""
    tests, queries = list(cfg.DATASETS.TEST), list(cfg.DATASETS.QUERY)
    if len(tests) != len(queries):
        raise ValueError(
            f"DATASETS.QUERY must name one query split per gallery split of DATASETS.TEST "
            f"(same order); got TEST={tests} and QUERY={queries}"
        )
    if gallery_name not in tests:
        raise KeyError(f"{gallery_name!r} is not in DATASETS.TEST={tests}")
    return queries[tests.index(gallery_name)]
