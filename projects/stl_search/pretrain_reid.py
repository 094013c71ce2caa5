#!/usr/bin/env python
"""STL steps 1 and 2: Re-ID pretraining of ResNet-IBN-a on person crops, then its export as the
person-search initialisation (``OUTPUT_DIR/<STL.EXPORT_NAME>``).

    python projects/stl_search/pretrain_reid.py --config-file configs/STL/PRW.yaml \
        [--num-gpus N] [KEY VALUE ...]
    python projects/stl_search/pretrain_reid.py --config-file ... --resume  # continue a killed run
    python projects/stl_search/pretrain_reid.py --config-file ... --eval-only \
        MODEL.WEIGHTS out/model_final.pth

--config-file is required. The last Re-ID evaluation goes to OUTPUT_DIR/reid_metrics.json;
--eval-only writes its config to config_eval.yaml and its results to
OUTPUT_DIR/eval/reid_metrics.json, leaving the training run's as they are.

``MODEL.DEVICE`` (default ``cuda``) falls back to the CPU where no GPU is visible; with the CPU,
``--num-gpus N`` starts N CPU processes (gloo).
"""

import stl_search  # noqa: F401  (registers the model parts and data sets)
from stl_search.compat import launch
from stl_search.engine.setup import argument_parser, load_config, setup
from stl_search.reid.trainer import run_pretraining


def main(args):
    cfg = setup(args)
    return run_pretraining(cfg, resume=args.resume, eval_only=args.eval_only)


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
