"""Convert a user's ImageNet ResNet weights to this project's Detectron2 layout ("ImageNet" rows).

Accepted inputs (nothing is downloaded; the file is the user's):

- a torchvision ResNet state dict (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``,
  ``layer1.0.downsample.0.weight``, ``fc.*``), e.g. ``torchvision.models.resnet50().state_dict()``;
- the IBN-Net ``resnet50_ibn_a`` release format: the same names with IBN norms
  (``layer1.0.bn1.IN.weight``, ``layer1.0.bn1.BN.running_mean``), possibly wrapped in
  ``{"state_dict": ...}`` and/or prefixed with ``module.``.

Names become Detectron2's ResNet names (``stem.conv1.*``, ``res2.0.conv1.norm.{IN,BN}.*``,
``res2.0.shortcut.*``); ``fc.*`` is dropped (logged); any other key is an error.
``--for reid`` writes ``backbone.*`` (``MODEL.WEIGHTS`` of the STL pretraining network);
``--for person_search`` (default) writes the person-search keys of the STL export
(:mod:`stl_search.reid.stl_init`): base nets, MRFP neck copy of res3, identification nets — the
embedding BN then stays at its initialisation, as in the paper's ImageNet rows.

torchvision-style ResNets put the stride in the 3x3 conv: use ``MODEL.RESNETS.STRIDE_IN_1X1 False``.
The CLI prints the config keys the weights need (:func:`resnet_config_of`: depth, widths, IBN
stages), e.g. ``MODEL.RESNETS.DEPTH 18 MODEL.RESNETS.RES2_OUT_CHANNELS 64
MODEL.ID_HEAD.EMBEDDING_DIM 512`` for a ResNet-18: a model of other widths would not load them.

CLI: ``python -m stl_search.tools.convert_imagenet IN.pth OUT.pth [--for person_search|reid]
[--no-mrfp-neck]``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence

import torch

from ..modeling.backbone.resnet_ibn import BLOCKS_PER_STAGE, STAGE_NAMES
from ..reid.stl_init import (
    export_for_person_search,
    parse_conversion_args,
    save_person_search_init,
)
from ..utils.checkpoint import read_weights_file
from ..utils.cli import HelpFormatter

__all__ = ["convert_for", "convert_imagenet_resnet", "resnet_config_of"]

logger = logging.getLogger(__name__)

_NORM = r"(?:\.(?:IN|BN))?\.(?:weight|bias|running_mean|running_var|num_batches_tracked)"
_RULES = (
    (re.compile(r"^conv1\.weight$"), lambda m: "stem.conv1.weight"),
    (re.compile(rf"^bn1({_NORM})$"), lambda m: f"stem.conv1.norm{m.group(1)}"),
    (
        re.compile(r"^layer([1-4])\.(\d+)\.conv(\d)\.weight$"),
        lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.conv{m.group(3)}.weight",
    ),
    (
        re.compile(rf"^layer([1-4])\.(\d+)\.bn(\d)({_NORM})$"),
        lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.conv{m.group(3)}.norm{m.group(4)}",
    ),
    (
        re.compile(r"^layer([1-4])\.(\d+)\.downsample\.0\.weight$"),
        lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.shortcut.weight",
    ),
    (
        re.compile(rf"^layer([1-4])\.(\d+)\.downsample\.1({_NORM})$"),
        lambda m: f"res{int(m.group(1)) + 1}.{m.group(2)}.shortcut.norm{m.group(3)}",
    ),
)


def _unwrap(obj: object) -> Dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(
            "expected a (non-empty) state dict, optionally under 'state_dict' or 'model'"
        )
    sd = {k: v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def convert_imagenet_resnet(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """torchvision / IBN-a ResNet names → Detectron2 ResNet names (no prefix); see module docstring.

    Raises:
        KeyError: listing every key that is neither a ResNet weight nor ``fc.*``.
    """
    sd = _unwrap(state_dict)
    out: Dict[str, torch.Tensor] = OrderedDict()
    dropped, unknown = [], []
    for key, value in sd.items():
        if key.startswith("fc."):
            dropped.append(key)
            continue
        for pattern, rename in _RULES:
            m = pattern.match(key)
            if m:
                if not key.endswith("num_batches_tracked"):
                    out[rename(m)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f"convert_imagenet_resnet: {len(unknown)} keys are not ResNet weights: "
            f"{sorted(unknown)[:20]}"
        )
    if not out:
        raise KeyError("convert_imagenet_resnet: no ResNet weights found")
    if dropped:
        logger.info("Dropped the ImageNet classifier: %s", ", ".join(sorted(dropped)))
    return out


def resnet_config_of(resnet: Mapping[str, torch.Tensor]) -> Dict[str, object]:
    """The config keys under which converted weights ``resnet`` (Detectron2 names, no prefix, as
    returned by :func:`convert_imagenet_resnet`) build a model they load into, as overrides:
    depth (from the blocks per stage and the block type), stem and res2 widths, embedding size,
    IBN stages.

    Raises:
        ValueError: if the blocks per stage match no ResNet depth.
    """
    blocks = tuple(
        len({k.split(".")[1] for k in resnet if k.startswith(name + ".")}) for name in STAGE_NAMES
    )
    bottleneck = "res2.0.conv3.weight" in resnet
    depths = [d for d, n in BLOCKS_PER_STAGE.items() if n == blocks and (d >= 50) == bottleneck]
    if not depths:
        raise ValueError(
            f"blocks per stage {blocks} ({'bottleneck' if bottleneck else 'basic'} blocks) match "
            f"no ResNet depth of {sorted(BLOCKS_PER_STAGE)}"
        )
    last_conv = "conv3" if bottleneck else "conv2"
    res2 = int(resnet[f"res2.0.{last_conv}.weight"].shape[0])
    ibn = [n for n in STAGE_NAMES if f"{n}.0.conv1.norm.IN.weight" in resnet]
    return {
        "MODEL.RESNETS.DEPTH": depths[0],
        "MODEL.RESNETS.STEM_OUT_CHANNELS": int(resnet["stem.conv1.weight"].shape[0]),
        "MODEL.RESNETS.RES2_OUT_CHANNELS": res2,
        "MODEL.ID_HEAD.EMBEDDING_DIM": res2 * 8,
        "MODEL.IBN.STAGES": ibn,
    }


def convert_for(
    state_dict: Mapping[str, torch.Tensor], target: str = "person_search", mrfp_neck: bool = True
) -> Dict[str, torch.Tensor]:
    """Convert and lay out for ``target``: ``"reid"`` (``backbone.*``) or ``"person_search"``."""
    resnet = {"backbone." + k: v for k, v in convert_imagenet_resnet(state_dict).items()}
    if target == "reid":
        return resnet
    if target == "person_search":
        return export_for_person_search(resnet, mrfp_neck=mrfp_neck, require_bnneck=False)
    raise ValueError(f"unknown target {target!r}; expected 'person_search' or 'reid'")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.tools.convert_imagenet",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "input",
        help="torchvision ResNet or IBN-Net resnet*_ibn_a .pth (yours; nothing is downloaded)",
    )
    parser.add_argument("output", help="converted .pth, for MODEL.WEIGHTS")
    parser.add_argument(
        "--for",
        dest="target",
        choices=("person_search", "reid"),
        default="person_search",
        help="person_search: the person-search model's keys; reid: the STL pretraining network's",
    )
    parser.add_argument(
        "--no-mrfp-neck", action="store_true", help="person_search: omit the MRFP neck copy of res3"
    )
    args = parse_conversion_args(parser, argv, "input")
    state_dict = read_weights_file(args.input)
    converted = convert_for(state_dict, args.target, mrfp_neck=not args.no_mrfp_neck)
    save_person_search_init(converted, args.output)
    logger.info("Wrote %d tensors (%s layout) to %s", len(converted), args.target, args.output)
    keys = resnet_config_of(convert_imagenet_resnet(state_dict))
    logger.info(
        "They load into a model built with: %s",
        " ".join(f"{k} {list(v) if isinstance(v, list) else v}" for k, v in keys.items()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
