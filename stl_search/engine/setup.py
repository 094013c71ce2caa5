"""Config set-up shared by every entry point (train_net.py, pretrain_reid.py, search,
benchmarks): config loading with the device actually used (``MODEL.DEVICE`` cuda falls back to
the CPU without a GPU), logging, the output folder.

A command's :func:`setup` first claims its ``OUTPUT_DIR`` (``stl_search.utils.output_dir``: one
run per folder, no fresh start over an earlier run's checkpoints) and removes the temp files that
killed runs left there, then does what Detectron2's ``default_setup`` does, except where the
config copy goes: ``config.yaml`` stays the config of the training run that made the folder's
checkpoints. An ``--eval-only`` run writes its config to ``config_eval.yaml``; a ``--resume``
over an earlier run's ``config.yaml`` leaves it to the trainer, which writes it once the
checkpoint has loaded (a refused resume changes nothing).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Optional, Sequence

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..config import add_stl_search_config
from ..data.datasets.person_search_json import register_person_search_json
from ..utils.cli import HelpFormatter
from ..utils.io import remove_stale_temp_files
from ..utils.output_dir import claim_output_dir, earlier_checkpoints, write_run_config
from ..utils.yaml_config import merge_yaml_config


class ConfigKeyError(KeyError):
    """A config file or a KEY VALUE override names a key that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0])


#: CUDA devices already said to fall back to the CPU (said once per process).
_FALLBACK_SAID: set = set()


def resolve_device(device: str) -> str:
    """``device`` (``MODEL.DEVICE``), or ``"cpu"`` where it names CUDA and no GPU is visible.

    The configs leave ``MODEL.DEVICE`` at Detectron2's default ``"cuda"``: a GPU is used when
    present, the CPU otherwise (said as a warning, once per process and device).

    Raises:
        ValueError: when ``device`` is no torch device.
    """
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(
            f"MODEL.DEVICE {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        if device not in _FALLBACK_SAID:
            _FALLBACK_SAID.add(device)
            logging.getLogger(__name__).warning(
                "MODEL.DEVICE is %r but torch sees no GPU: running on the CPU", device
            )
        return "cpu"
    return device


def load_config(
    config_file: Optional[str] = None,
    opts: Sequence[str] = (),
    *,
    stored: Optional[CfgNode] = None,
) -> CfgNode:
    """Detectron2 defaults + stl-search keys, then ``config_file`` (with its ``_BASE_``), then
    ``opts`` (the data sets of ``DATASETS.PERSON_SEARCH_JSON`` are then registered), then
    ``stored`` (a config saved with an index), and ``MODEL.DEVICE`` is resolved
    (:func:`resolve_device`: only the device the config ends up with is resolved and warned
    about).

    Raises:
        ConfigKeyError: naming the unknown key and where it came from.
        FileNotFoundError: when ``config_file`` (or a JSON data set file) does not exist.
        stl_search.utils.yaml_config.ConfigFileError: naming the file, when it (or a
            ``_BASE_`` file) is no plain YAML mapping; ``UnsafeConfigError`` when it holds a
            ``!!python`` tag (nothing of it runs).
        DatasetFormatError: naming every problem of a ``DATASETS.PERSON_SEARCH_JSON`` file.
    """
    cfg = add_stl_search_config(get_cfg())
    if config_file:
        try:
            merge_yaml_config(cfg, config_file)
        except KeyError as e:
            raise ConfigKeyError(f"{config_file}: {e.args[0] if e.args else e}") from None
    if opts:
        if len(opts) % 2:
            raise ValueError(f"KEY VALUE overrides must come in pairs, got {list(opts)}")
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, AssertionError) as e:  # yacs asserts on unknown override keys
            message = str(e.args[0]) if e.args else str(e)
            if isinstance(e, AssertionError) and "Non-existent key" not in message:
                raise
            raise ConfigKeyError(f"command-line override: {message}") from None
    for json_file in cfg.DATASETS.PERSON_SEARCH_JSON:  # before anything reads the data set names
        register_person_search_json(os.path.splitext(os.path.basename(json_file))[0], json_file)
    if stored is not None:  # its data sets need not exist where the stored config is used
        cfg.merge_from_other_cfg(stored)
    cfg.MODEL.DEVICE = resolve_device(cfg.MODEL.DEVICE)
    return cfg


def _config_file(path: str) -> str:
    if not path:
        raise argparse.ArgumentTypeError("is empty; give the run's YAML config")
    return path


def argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` plus ``--overwrite``; ``--help`` shows defaults.

    ``--config-file`` is required: without it Detectron2 would run its own defaults, which are no
    person-search model.
    """
    parser = default_argument_parser(epilog)
    parser.formatter_class = HelpFormatter
    config_file = parser._option_string_actions["--config-file"]
    config_file.required, config_file.default, config_file.type = True, None, _config_file
    config_file.help = (
        "the run's YAML config, e.g. configs/PRW/stl_mrfp.yaml (required: Detectron2's "
        "defaults are no person-search model)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a fresh run in an OUTPUT_DIR that holds checkpoints of an earlier run "
        "(they are deleted); without it such a start is refused (use --resume to continue)",
    )
    return parser


def setup(args: argparse.Namespace) -> CfgNode:
    """Build and freeze the config of a Detectron2-style command, claim its ``OUTPUT_DIR`` (main
    process) and set up logging, seeds and the config copy (module docstring).

    Detectron2's "detectron2" and "fvcore" loggers and this project's "stl_search" one log to the
    console (rank 0) and ``OUTPUT_DIR/log.txt``.

    Raises:
        stl_search.utils.output_dir.OutputDirInUseError: another run holds ``OUTPUT_DIR``.
        stl_search.utils.output_dir.ExistingRunError: a fresh training start over checkpoints
            without ``--resume`` or ``--overwrite``.

    Once it holds the folder, the main process removes the temp files that killed runs left in
    it (writes interrupted by a kill: ``stl_search.utils.io.remove_stale_temp_files``).
    """
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    eval_only = bool(getattr(args, "eval_only", False))
    resume = bool(getattr(args, "resume", False))
    removed = []
    config_name: Optional[str] = "config_eval.yaml" if eval_only else "config.yaml"
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        claim_output_dir(
            cfg.OUTPUT_DIR,
            resume=resume,
            eval_only=eval_only,
            overwrite=bool(getattr(args, "overwrite", False)),
        )
        # The folder is ours now: temp files in it are those of killed writers.
        removed = remove_stale_temp_files(cfg.OUTPUT_DIR)
        if resume and not eval_only and earlier_checkpoints(cfg.OUTPUT_DIR):
            if os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "config.yaml")):
                config_name = None  # the trainer writes it once the checkpoint has loaded
    _default_setup(cfg, args, config_name)
    logger = setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="stl_search", abbrev_name="stl"
    )
    if removed:
        logger.info("Removed %d temp file(s) left by interrupted writes: %s", len(removed), removed)
    return cfg


def _default_setup(cfg: CfgNode, args: argparse.Namespace, config_name: Optional[str]) -> None:
    """Detectron2's ``default_setup`` (v0.6 and main), with the config copy named
    ``config_name`` (it always writes ``config.yaml``; ``None``: no copy written here)."""
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    logger = setup_logger(output_dir, distributed_rank=rank)
    logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    logger.info("Environment info:\n%s", collect_env_info())
    logger.info("Command line arguments: %s", args)
    if getattr(args, "config_file", ""):
        with open(args.config_file) as f:
            logger.info("Contents of args.config_file=%s:\n%s", args.config_file, f.read())
    if comm.is_main_process() and output_dir:
        logger.info("Running with full config:\n%s", cfg.dump())
        if config_name:
            logger.info("Full config saved to %s", write_run_config(cfg, config_name))
    # each worker gets a different, yet deterministic seed when SEED >= 0
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    # cudnn benchmark has large overhead for the few images of an evaluation
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
