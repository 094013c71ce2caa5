"""Person search in a Detectron2 project of your own: Detectron2's ``DefaultTrainer`` pattern.

Nothing of stl-search's engine (``train_net.py``, ``PersonSearchTrainer``) is used: only
``import stl_search``, which registers the model, and five of its names. The trainer is the one a
Detectron2 user writes for any model (as in Detectron2's ``tools/train_net.py``), with two changes
that keep code in files from running:

- the config is merged with ``allow_unsafe=False``: Detectron2's default (``True``) reads a config
  that plain YAML cannot with ``yaml.unsafe_load``, which runs a ``!!python/...`` tag's command;
- weights are loaded by ``stl_search.AtomicCheckpointer`` (``build_hooks`` puts it in place of
  ``DetectionCheckpointer``, which unpickles ``.pkl`` weights with ``pickle.load``, running what
  the file names): ``.pkl`` files through a restricted unpickler, others with
  ``torch.load(weights_only=True)``; its saves are atomic.

The person-search parts:

- ``build_train_loader``: Detectron2's ``build_detection_train_loader`` with
  ``stl_search.PersonSearchDatasetMapper(cfg, mode="train")`` (boxes with person ids);
- ``build_test_loader``: ``stl_search.build_person_search_eval_loader``: the gallery images, then
  the query images of the split. Person search needs both passes; with this one loader,
  Detectron2's own ``DefaultTrainer.test`` / ``inference_on_dataset`` run them;
- ``build_evaluator``: ``stl_search.PersonSearchEvaluator(cfg, dataset_name)`` (the query split is
  the gallery's metadata ``query_name``).

The ID classifier's size (``MODEL.PERSON_SEARCH.NUM_IDENTITIES``) is set in ``setup`` from the
training split when the config leaves it at 0. As with any Detectron2 config, ``MODEL.DEVICE`` is
Detectron2's default ``cuda`` unless given: add ``MODEL.DEVICE cpu`` on a machine without a GPU.

    python examples/detectron2_default_trainer.py \\
        --config-file configs/synthetic/person_search.yaml [--eval-only] [KEY VALUE ...]
"""

import weakref

from detectron2.config import get_cfg
from detectron2.data import build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch

import stl_search
from stl_search.utils.cli import HelpFormatter


class Trainer(DefaultTrainer):
    def build_hooks(self):
        # DefaultTrainer.__init__ calls this right after making its DetectionCheckpointer:
        # replaced here, the safe one serves resume_or_load and the PeriodicCheckpointer hook.
        self.checkpointer = stl_search.AtomicCheckpointer(
            self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        return super().build_hooks()

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = stl_search.PersonSearchDatasetMapper(cfg, mode="train")
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return stl_search.build_person_search_eval_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return stl_search.PersonSearchEvaluator(cfg, dataset_name)


def setup(args):
    cfg = stl_search.add_stl_search_config(get_cfg())
    cfg.merge_from_file(args.config_file, allow_unsafe=False)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES <= 0:
        train_split = cfg.DATASETS.TRAIN[0]
        cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = stl_search.num_training_identities(train_split)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        stl_search.AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.formatter_class = HelpFormatter  # --help shows the defaults too
    args = parser.parse_args()
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
