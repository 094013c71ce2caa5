"""``PersonSearchTrainer``: Detectron2's ``DefaultTrainer`` for the person-search model.

Detectron2's ``DefaultTrainer.__init__`` builds the trainer (model, optimizer, training loader,
DDP, ``SimpleTrainer`` or ``AMPTrainer`` per ``SOLVER.AMP.ENABLED``, scheduler, checkpointer,
hooks); this class overrides its builders only, and changes, with reasons:
- ``build_model``: the identity metadata the ID loss needs is read from the training set here,
  before the model is built (``stl_search.engine.model``); ``modeling`` reads no data set;
- ``build_train_loader``: the training stream is a pure function of (seed, position)
  (``stl_search.data.build``): a resumed run sees exactly the samples the killed run would have
  seen next. The seed (``SEED``, or a time-based one when negative) is saved in checkpoints;
- ``build_hooks``: checkpoints are written atomically, hold the optimizer state on every
  Detectron2 version (v0.6 does not save it) and report on STL exports they load
  (``stl_search.engine.checkpoint``);
- DDP also wraps CPU models (``device_ids=None``, ``stl_search.compat``); BatchNorm is
  synchronised over the processes with ``MODEL.BATCH_NORM.SYNC``, and too few images per process
  are warned about (``stl_search.engine.batch_norm``);
- evaluation runs each gallery split (``DATASETS.TEST``) through detection and its query split
  (``DATASETS.QUERY``, same order) through the model's query mode, then the person-search
  evaluator, and writes the results to ``OUTPUT_DIR/eval_metrics.json`` (atomically;
  Detectron2's JSONWriter owns ``metrics.json``) and the evaluator's files to
  ``OUTPUT_DIR/inference/``; an ``--eval-only`` run writes both into ``OUTPUT_DIR/eval/``
  (``stl_search.utils.output_dir.EVAL_ONLY_DIR``), leaving the training run's evaluation as it was;
- ``resume_or_load``: a resume writes ``config.yaml`` once the checkpoint has loaded (``setup``
  leaves an earlier run's copy alone until then).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional

from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import print_csv_format
from detectron2.modeling import build_model
from detectron2.utils import comm

from ..compat import cpu_ddp_in_default_trainer, replace_trainer_data_loader
from ..data.build import (
    build_person_search_test_loader,
    build_person_search_train_loader,
    data_stream_seed,
)
from ..evaluation import PersonSearchEvaluator, inference_on_person_search
from ..modeling.fast_path import prepare_inference_model
from ..utils.io import atomic_write_json
from ..utils.output_dir import write_run_config
from .batch_norm import maybe_sync_batchnorm
from .checkpoint import PersonSearchCheckpointer
from .model import resolve_training_metadata

logger = logging.getLogger(__name__)


class PersonSearchTrainer(DefaultTrainer):
    """Trains and evaluates ``PersonSearchRCNN`` (or any model with the same I/O) from a config."""

    def __init__(self, cfg: CfgNode):
        if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
            raise ValueError("SOLVER.AMP.ENABLED needs CUDA; set it to False with MODEL.DEVICE cpu")
        check_lr_steps(cfg)
        if cfg.SEED < 0:  # one seed for the stream, resolved once and saved in the checkpoints
            frozen, cfg = cfg.is_frozen(), cfg.clone()
            cfg.defrost()
            cfg.SEED = data_stream_seed(cfg)
            if frozen:
                cfg.freeze()
        with cpu_ddp_in_default_trainer():
            super().__init__(cfg)
        self.data_seed = self.cfg.SEED

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
        if resume and comm.is_main_process() and self.cfg.OUTPUT_DIR:
            cfg = self.cfg.clone()
            cfg.defrost()
            cfg.SEED = self.data_seed  # the seed of the stream being continued
            write_run_config(cfg)
        if self.start_iter > 0:
            loader = self.build_train_loader(
                self.cfg, seed=self.data_seed, start_iter=self.start_iter
            )
            replace_trainer_data_loader(self._trainer, loader)
            logger.info(
                "Resumed at iteration %d (data stream seed %d)", self.start_iter, self.data_seed
            )

    def build_hooks(self) -> List[Any]:
        # DefaultTrainer.__init__ has just built a plain DetectionCheckpointer; the atomic one
        # replaces it before the checkpointing hook takes it.
        self.checkpointer = PersonSearchCheckpointer(
            self.model,
            self.cfg.OUTPUT_DIR,
            allow_partial_weights=self.cfg.MODEL.ALLOW_PARTIAL_WEIGHTS,
            trainer=weakref.proxy(self),
        )
        return super().build_hooks()

    # ---- builders ---------------------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg: CfgNode):
        """The model of ``cfg``, its identity metadata read from the training set when not set."""
        model = build_model(resolve_training_metadata(cfg))
        model = maybe_sync_batchnorm(cfg, model, comm.get_world_size())
        logger.info("Model:\n%s", model)
        return model

    @classmethod
    def build_train_loader(cls, cfg: CfgNode, seed: Optional[int] = None, start_iter: int = 0):
        """Batches of mapped training images; sample ``i * IMS_PER_BATCH + j`` is fixed by ``seed``
        (default ``cfg.SEED``)."""
        return build_person_search_train_loader(cfg, seed=seed, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str, mode: str = "test"):
        """Gallery (``mode="test"``) or query (``mode="query"``) loader, ``TEST.IMS_PER_BATCH``
        images per batch."""
        return build_person_search_test_loader(cfg, dataset_name, mode)

    @classmethod
    def build_evaluator(
        cls,
        cfg: CfgNode,
        dataset_name: str,
        query_name: Optional[str] = None,
        output_folder: Optional[str] = None,
    ):
        if query_name is None:
            query_name = query_split_for(cfg, dataset_name)
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return PersonSearchEvaluator(cfg, dataset_name, query_name, output_folder)

    @classmethod
    def test(
        cls,
        cfg: CfgNode,
        model,
        evaluators: Optional[List] = None,
        output_dir: Optional[str] = None,
    ) -> "OrderedDict[str, Any]":
        """Evaluate ``model`` on every (gallery, query) pair of ``DATASETS.TEST`` /
        ``DATASETS.QUERY``, on the inference fast path of ``TEST.FAST_PATH`` (a prepared copy of
        ``model`` when a piece is on; ``model`` itself is never changed). Results go to
        ``output_dir`` (default ``OUTPUT_DIR``): ``eval_metrics.json`` and ``inference/``."""
        output_dir = cfg.OUTPUT_DIR if output_dir is None else output_dir
        model = prepare_inference_model(model, cfg)
        results: "OrderedDict[str, Any]" = OrderedDict()
        for idx, gallery_name in enumerate(cfg.DATASETS.TEST):
            query_name = query_split_for(cfg, gallery_name)
            evaluator = (
                evaluators[idx]
                if evaluators is not None
                else cls.build_evaluator(
                    cfg,
                    gallery_name,
                    query_name,
                    os.path.join(output_dir, "inference", gallery_name),
                )
            )
            # The evaluator names the split whose queries run (CUHK-SYSU: one of the per-size
            # splits).
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
                os.path.join(output_dir, "eval_metrics.json"),
            )
        return results


def check_lr_steps(cfg: CfgNode) -> None:
    """Refuse a learning-rate drop (``SOLVER.STEPS``) at or after the last iteration: it never
    happens, and Detectron2 only warns. Typically ``SOLVER.MAX_ITER`` was shortened on the
    command line and the config's ``SOLVER.STEPS`` kept.

    Raises:
        ValueError: naming both keys and their values.
    """
    late = [step for step in cfg.SOLVER.STEPS if step >= cfg.SOLVER.MAX_ITER]
    if late:
        raise ValueError(
            f"SOLVER.STEPS {tuple(cfg.SOLVER.STEPS)} has step(s) {late} at or after "
            f"SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}: such a learning-rate drop never happens. "
            "Set SOLVER.STEPS below SOLVER.MAX_ITER (or to () for no drop)."
        )


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
