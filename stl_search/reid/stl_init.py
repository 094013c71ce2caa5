"""STL step 2 (paper 3.1): the Re-ID pretraining weights as a person-search initialisation.

The pretrained ResNet-IBN-a is split the way the person-search model uses it (interfaces.md):

=====================  ===========================================  ============================
ReIDNet key            person-search key                            part
=====================  ===========================================  ============================
``backbone.stem.*``    ``backbone.stem.*``                          base nets
``backbone.res2.*``    ``backbone.res2.*``                          base nets
``backbone.res3.*``    ``backbone.res3.*``                          base nets
``backbone.res3.*``    ``roi_heads.id_pooler.neck.*``               MRFP neck (its own copy)
``backbone.res4.*``    ``roi_heads.id_head.res4.*``                 identification nets
``backbone.res5.*``    ``roi_heads.id_head.res5.*``                 identification nets
``bnneck.*``           ``roi_heads.id_head.bnneck.*``               embedding BN (BNNeck)
``classifier.*``       (dropped)                                    Re-ID crop classifier
``center_loss.*``      (dropped)                                    centre-loss state
=====================  ===========================================  ============================

Any other key is an error (a silently unexported weight would make the "STL" row an ImageNet or
random one). ``num_batches_tracked`` counters are dropped: Detectron2's ``FrozenBatchNorm2d`` has
none and ``BatchNorm`` restores them from version-less state dicts. Loading the result with
``MODEL.WEIGHTS`` leaves exactly the RPN (``proposal_generator.*``), the box head
(``roi_heads.box_head.*``, ``roi_heads.box_predictor.*``) and the ID classifier
(``roi_heads.id_loss.*``) uninitialised; :func:`describe_missing_keys` says so in words.

CLI: ``python -m stl_search.reid.stl_init <pretrain checkpoint> <out.pth> [--no-mrfp-neck]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..utils.checkpoint import read_weights_file
from ..utils.io import atomic_torch_save

__all__ = [
    "NOT_EXPORTED_PREFIXES",
    "PERSON_SEARCH_UNINITIALISED",
    "crop_size_mismatch",
    "describe_missing_keys",
    "export_for_person_search",
    "load_model_state_dict",
    "parse_conversion_args",
    "refuse_same_file",
    "save_person_search_init",
]

logger = logging.getLogger(__name__)

#: (ReIDNet prefix, person-search prefixes it initialises); ``neck`` marks the MRFP copy.
_MAPPING: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("backbone.stem.", ("backbone.stem.",)),
    ("backbone.res2.", ("backbone.res2.",)),
    ("backbone.res3.", ("backbone.res3.", "roi_heads.id_pooler.neck.")),
    ("backbone.res4.", ("roi_heads.id_head.res4.",)),
    ("backbone.res5.", ("roi_heads.id_head.res5.",)),
    ("bnneck.", ("roi_heads.id_head.bnneck.",)),
)
_NECK_PREFIX = "roi_heads.id_pooler.neck."

#: ReIDNet keys that are training state of the pretraining task, not part of the initialisation.
NOT_EXPORTED_PREFIXES: Tuple[str, ...] = ("classifier.", "center_loss.")

#: Person-search parts that the STL initialisation leaves to their own initialisers, in words.
PERSON_SEARCH_UNINITIALISED: "OrderedDict[str, str]" = OrderedDict(
    [
        ("proposal_generator.", "RPN"),
        ("roi_heads.box_head.", "box head"),
        ("roi_heads.box_predictor.", "box predictor"),
        ("roi_heads.id_loss.", "ID classifier / OIM tables"),
    ]
)


def _strip(state_dict: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def export_for_person_search(
    reid_state_dict: Mapping[str, torch.Tensor],
    *,
    mrfp_neck: bool = True,
    require_bnneck: bool = True,
) -> Dict[str, torch.Tensor]:
    """Map a ``ReIDNet`` state dict onto the person-search model's keys (see module docstring).

    Args:
        reid_state_dict: ``ReIDNet.state_dict()`` (a ``module.`` prefix from DDP is stripped).
        mrfp_neck: also write the res3 copy for the MRFP neck (``False`` for the single-level
            "Baseline" model, which has no neck).
        require_bnneck: fail when the ``bnneck`` is missing (``False`` for ImageNet weights).

    Raises:
        KeyError: on a key outside the mapping, or when a stage (or the BN neck) is absent.
    """
    src = _strip(reid_state_dict, "module.")
    out: Dict[str, torch.Tensor] = OrderedDict()
    found = {prefix: 0 for prefix, _ in _MAPPING}
    unknown: List[str] = []
    for key, value in src.items():
        if key.endswith("num_batches_tracked") or key.startswith(NOT_EXPORTED_PREFIXES):
            continue
        for prefix, targets in _MAPPING:
            if key.startswith(prefix):
                found[prefix] += 1
                rest = key[len(prefix) :]
                for target in targets:
                    if target == _NECK_PREFIX and not mrfp_neck:
                        continue
                    out[target + rest] = value.detach().clone()
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f"export_for_person_search: keys outside the ReIDNet layout: {sorted(unknown)[:20]}"
            f"{' ...' if len(unknown) > 20 else ''}"
        )
    required = [p for p, _ in _MAPPING if p != "bnneck." or require_bnneck]
    absent = [p for p in required if found[p] == 0]
    if absent:
        raise KeyError(
            f"export_for_person_search: no weights under {absent} in the Re-ID state dict"
        )
    return out


def load_model_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint file: its ``model`` entry, or the file itself."""
    loaded = read_weights_file(path)
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(
            f"{path}: not a state dict of tensors (nor a checkpoint with a 'model' entry)"
        )
    return loaded


def refuse_same_file(input_path: str, output_path: str) -> None:
    """Raise ``ValueError`` when ``output_path`` is ``input_path`` (same file by real path, or the
    same inode through a link): writing the output would replace the input."""
    same = os.path.realpath(input_path) == os.path.realpath(output_path)
    if not same and os.path.exists(input_path) and os.path.exists(output_path):
        same = os.path.samefile(input_path, output_path)
    if same:
        raise ValueError(
            f"the output {output_path} is the input {input_path}: writing it would replace the "
            "input; choose another output file"
        )


def parse_conversion_args(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]], input_dest: str
) -> argparse.Namespace:
    """Parse the command line of a weights conversion (``input_dest`` names the input file's
    argument, ``output`` the output's), set up logging, and refuse an output that is the input
    (a usage error through ``parser.error``, see :func:`refuse_same_file`)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        refuse_same_file(getattr(args, input_dest), args.output)
    except ValueError as e:
        parser.error(str(e))
    return args


def save_person_search_init(
    state_dict: Mapping[str, torch.Tensor],
    path: str,
    reid_input_size: Optional[Sequence[int]] = None,
) -> None:
    """Write ``state_dict`` atomically as a Detectron2 checkpoint (exact keys, no name heuristics).

    ``reid_input_size`` (the pretraining crops' ``(height, width)``) is stored beside the weights so
    that loading them can check it against the person-search model's RoI size
    (:func:`crop_size_mismatch`).
    """
    data = {"model": dict(state_dict), "__author__": "stl-search", "matching_heuristics": False}
    if reid_input_size is not None:
        data["reid_input_size"] = [int(v) for v in reid_input_size]
    atomic_torch_save(data, path)


def crop_size_mismatch(reid_input_size: Sequence[int], id_rois) -> Optional[str]:
    """A warning when the identification RoIs do not cover what the pretraining crops covered.

    The transferred identification nets learned on the res3 maps of ``reid_input_size`` crops
    (256x128 -> 32x16 at stride 8 in the paper); the person-search model feeds them RoIs of
    ``id_rois.height x id_rois.width`` on its stride-``id_rois.stride`` map. When the two differ,
    the nets see person features at another scale than they were trained on, and the transfer
    loses much of its value. ``id_rois`` is the ID pooler's ``output_shape``. Returns ``None``
    when they match.
    """
    h, w = (int(v) for v in reid_input_size)
    s = id_rois.stride
    if not s or (id_rois.height * s, id_rois.width * s) == (h, w):
        return None
    roi_h, roi_w = id_rois.height, id_rois.width
    return (
        f"The STL initialisation was pretrained on {h}x{w} crops (res3 maps {h // s}x{w // s}), "
        f"but this model's identification RoIs are {roi_h}x{roi_w} on the stride-{s} map, i.e. "
        f"crops of {roi_h * s}x{roi_w * s}: the transferred identification nets see features at "
        f"another scale. Match them: REID.INPUT.SIZE ({roi_h * s}, {roi_w * s}) in step 1, or "
        f"MODEL.ID_HEAD.POOLER_RESOLUTION ({h // s}, {w // s}) here (the paper: 256x128 crops, "
        "32x16 RoIs)."
    )


def describe_missing_keys(missing_keys: Iterable[str]) -> str:
    """One readable paragraph on what an STL / ImageNet initialisation left uninitialised.

    Missing keys of the expected parts (:data:`PERSON_SEARCH_UNINITIALISED`) are summarised by
    part; any other missing key (a backbone or identification-net weight) is listed as an error.
    """
    groups: Dict[str, int] = OrderedDict((name, 0) for name in PERSON_SEARCH_UNINITIALISED.values())
    other: List[str] = []
    for key in missing_keys:
        for prefix, name in PERSON_SEARCH_UNINITIALISED.items():
            if key.startswith(prefix):
                groups[name] += 1
                break
        else:
            other.append(key)
    parts = ", ".join(f"{name} ({n} tensors)" for name, n in groups.items() if n)
    msg = (
        f"Initialised from the checkpoint except: {parts or 'nothing'} "
        "(expected: trained from scratch)."
    )
    if other:
        msg += f" UNEXPECTEDLY MISSING ({len(other)}): {sorted(other)[:20]}"
    return msg


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.reid.stl_init",
        description=(
            "STL step 2: Re-ID pretraining checkpoint -> person-search initialisation "
            "(MODEL.WEIGHTS)."
        ),
    )
    parser.add_argument(
        "checkpoint", help="pretraining checkpoint (e.g. OUTPUT_DIR/model_final.pth)"
    )
    parser.add_argument("output", help="output .pth for MODEL.WEIGHTS of the person-search model")
    parser.add_argument(
        "--no-mrfp-neck",
        action="store_true",
        help="omit the MRFP neck copy (for the single-level 'Baseline' model)",
    )
    args = parse_conversion_args(parser, argv, "checkpoint")
    exported = export_for_person_search(
        load_model_state_dict(args.checkpoint), mrfp_neck=not args.no_mrfp_neck
    )
    save_person_search_init(exported, args.output)
    logger.info("Wrote %d tensors to %s", len(exported), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
