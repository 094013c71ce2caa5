"""Config set-up shared by every entry point (train_net.py, pretrain_reid.py, search,
benchmarks)."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_stl_search_config


class ConfigKeyError(KeyError):
    """A config file or a KEY VALUE override names a key that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0])


def load_config(config_file: Optional[str] = None, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2 defaults + stl-search keys, then ``config_file`` (with its ``_BASE_``), then
    ``opts``.

    Raises:
        ConfigKeyError: naming the unknown key and where it came from.
        FileNotFoundError: when ``config_file`` does not exist.
    """
    cfg = add_stl_search_config(get_cfg())
    if config_file:
        try:
            cfg.merge_from_file(config_file)
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
    return cfg


def setup(args: argparse.Namespace) -> CfgNode:
    """Build, freeze and log the config of a Detectron2-style command (``default_setup``).

    ``default_setup`` configures the "detectron2" and "fvcore" loggers; this project's modules log
    under "stl_search", set up here the same way (console on rank 0, ``OUTPUT_DIR/log.txt``).
    """
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="stl_search", abbrev_name="stl"
    )
    return cfg
