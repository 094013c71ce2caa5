#!/usr/bin/env python
"""Train and evaluate the one-step person-search model (STL + MRFP) with Detectron2.

    python train_net.py --config-file configs/PRW/stl_mrfp.yaml [--num-gpus 8] [KEY VALUE ...]
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume   # continue from OUTPUT_DIR/last_checkpoint

One run per OUTPUT_DIR (a lock, OUTPUT_DIR/.lock); a fresh start where checkpoints exist needs
--resume (continue) or --overwrite (delete them and the run's records). --eval-only writes its
config to config_eval.yaml and its results to OUTPUT_DIR/eval/ (eval_metrics.json, inference/),
leaving the training run's config.yaml and evaluation as they are.

``MODEL.DEVICE`` (default ``cuda``) falls back to the CPU where no GPU is visible; with the CPU,
``--num-gpus N`` starts N CPU processes (gloo).
"""

import os

from detectron2.utils import comm

import stl_search  # noqa: F401  (registers the model parts and data sets)
from stl_search.compat import launch
from stl_search.engine.model import build_inference_model
from stl_search.engine.results_table import format_results_table
from stl_search.engine.setup import argument_parser, load_config, setup
from stl_search.engine.trainer import PersonSearchTrainer
from stl_search.utils.output_dir import EVAL_ONLY_DIR


def main(args):
    cfg = setup(args)
    if args.eval_only:
        # Sized from its weights file: evaluation needs no training set.
        model = build_inference_model(cfg, resume=args.resume)
        results = PersonSearchTrainer.test(
            cfg, model, output_dir=os.path.join(cfg.OUTPUT_DIR, EVAL_ONLY_DIR)
        )
        if comm.is_main_process():
            print(format_results_table(results))
        return results
    trainer = PersonSearchTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        device=load_config(args.config_file, args.opts).MODEL.DEVICE,
    )
