"""Fig. 6: the initial feature maps of the base nets under two (or more) initialisations.

    python -m stl_search.tools.visualize_features --config-file configs/PRW/stl_mrfp.yaml \
        --weights pretrained/r50_ibn_a_person_search.pth output/stl/prw/stl_init.pth \
        --labels ImageNet STL --image frame.jpg [frame2.jpg ...] --out fig6.png \
        [--stages stem res2 res3] [KEY VALUE ...]

The paper compares the base nets' feature maps of the ImageNet and the STL initialisation before
any person-search training (person areas come out brighter with STL). For every weight file
(``random``: the model's own seeded random initialisation) the base nets (stem..res3, built from
the config, loaded from the file's ``backbone.*`` weights: an STL export, a converted ImageNet file
or a person-search checkpoint) run on each image as at test time (the config's resize rule, input
format and normalisation, BatchNorm in inference mode). Each stage's activation is drawn as the
channel mean of its absolute value, scaled per map from its minimum (dark) to its maximum
(bright): the maps show where each initialisation responds, not how strongly in absolute terms.
Rows are images; the columns are the image, then for each stage the initialisations side by side.
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from ..data.mapper import build_person_search_augmentations
from ..engine.setup import load_config
from ..utils.checkpoint import read_weights_file
from ..utils.cli import HelpFormatter
from ..utils.images import read_image
from ..utils.io import atomic_open

__all__ = ["BASE_NET_STAGES", "RANDOM", "feature_maps", "load_base_nets", "render_feature_grid"]

#: The base nets' outputs the figure can show (the person-search model's backbone stops at res3).
BASE_NET_STAGES = ("stem", "res2", "res3")
#: ``--weights`` value for the random initialisation (what ``MODEL.WEIGHTS ""`` trains from).
RANDOM = "random"


def load_base_nets(cfg: CfgNode, weights: str, stages: Sequence[str], seed: int = 0) -> nn.Module:
    """The base nets of ``cfg`` returning ``stages``, in inference mode, loaded from ``weights``.

    Raises:
        ValueError: for a stage that is not a base-net output.
        KeyError: when ``weights`` lacks a base-net tensor (naming the file and the keys), so that
            a figure never shows a random map under a pretrained label.
    """
    unknown = [s for s in stages if s not in BASE_NET_STAGES]
    if unknown:
        raise ValueError(f"--stages {unknown}: the base nets output only {BASE_NET_STAGES}")
    cfg = cfg.clone()
    cfg.MODEL.RESNETS.OUT_FEATURES = [s for s in BASE_NET_STAGES if s in stages]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    torch.manual_seed(seed)
    backbone = build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
    if weights != RANDOM:
        loaded = read_weights_file(weights)
        state = loaded.get("model", loaded) if isinstance(loaded, dict) else loaded
        base = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        wanted = [k for k in backbone.state_dict() if not k.endswith("num_batches_tracked")]
        missing = [k for k in wanted if k not in base]
        if missing:
            raise KeyError(
                f"{weights}: no base-net weights backbone.{missing[0]} "
                f"({len(missing)} of {len(wanted)} missing); expected an STL export, a converted "
                f"ImageNet file or a person-search checkpoint"
            )
        backbone.load_state_dict({k: base[k] for k in wanted}, strict=False)
    return backbone.to(cfg.MODEL.DEVICE).eval()


def _network_input(cfg: CfgNode, path: str) -> np.ndarray:
    """The image of ``path`` in ``INPUT.FORMAT``, resized by the test-time rule (H, W, 3)."""
    image = read_image(path, cfg.INPUT.FORMAT)
    aug = T.AugInput(image)
    T.AugmentationList(build_person_search_augmentations(cfg, False))(aug)
    return aug.image


@torch.no_grad()
def feature_maps(backbone: nn.Module, cfg: CfgNode, image: np.ndarray) -> Dict[str, np.ndarray]:
    """``{stage: map}``: the channel mean of ``|activation|`` of each output of ``backbone`` on
    ``image`` (H, W, 3 in ``INPUT.FORMAT``), scaled to [0, 1] per map (a constant map is 0)."""
    device = cfg.MODEL.DEVICE
    x = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)), dtype=torch.float32)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1)
    out = backbone(((x - mean) / std)[None].to(device))
    maps = {}
    for name, act in out.items():
        m = act[0].abs().mean(dim=0).float().cpu()
        span = m.max() - m.min()
        maps[name] = ((m - m.min()) / span if span > 0 else torch.zeros_like(m)).numpy()
    return maps


def render_feature_grid(
    images: Sequence[np.ndarray],
    maps: Sequence[Dict[str, Dict[str, np.ndarray]]],
    labels: Sequence[str],
    stages: Sequence[str],
    out_path: str,
) -> None:
    """Save the grid as a PNG (atomically): one row per image (RGB, H x W x 3), then per stage
    one map per label (``maps[row][label][stage]``), each stretched to the image's size."""
    cols = 1 + len(stages) * len(labels)
    h, w = images[0].shape[:2]
    panel = 2.2
    fig = Figure(figsize=(cols * panel, len(images) * panel * h / w + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    for r, (image, row_maps) in enumerate(zip(images, maps)):
        ax = fig.add_subplot(len(images), cols, r * cols + 1)
        ax.imshow(image)
        ax.set_axis_off()
        if r == 0:
            ax.set_title("image", fontsize=8)
        c = 1
        for stage in stages:
            for label in labels:
                c += 1
                ax = fig.add_subplot(len(images), cols, r * cols + c)
                extent = (0, image.shape[1], image.shape[0], 0)
                ax.imshow(row_maps[label][stage], cmap="jet", vmin=0, vmax=1, extent=extent)
                ax.set_axis_off()
                if r == 0:
                    ax.set_title(f"{stage}: {label}", fontsize=8)
    fig.tight_layout()
    with atomic_open(out_path, "wb") as f:
        fig.savefig(f, format="png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stl_search.tools.visualize_features",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="the model's config (YAML)"
    )
    parser.add_argument(
        "--weights", required=True, nargs="+", help=f"weight files to compare ({RANDOM!r}: random)"
    )
    parser.add_argument("--labels", nargs="+", help="column labels (default: the file names)")
    parser.add_argument("--image", required=True, nargs="+", help="scene image(s)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument(
        "--stages", nargs="+", default=list(BASE_NET_STAGES), help="base-net stages to draw"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = build_parser().parse_args(argv)
    labels: List[str] = args.labels or [os.path.basename(w) for w in args.weights]
    if len(labels) != len(args.weights) or len(set(labels)) != len(labels):
        raise ValueError(f"--labels {labels}: one distinct label per --weights entry")
    cfg = load_config(args.config_file, args.opts)
    nets = {label: load_base_nets(cfg, w, args.stages) for label, w in zip(labels, args.weights)}
    images, maps = [], []
    for path in args.image:
        image = _network_input(cfg, path)
        maps.append({label: feature_maps(net, cfg, image) for label, net in nets.items()})
        images.append(image[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else image)
    render_feature_grid(images, maps, labels, args.stages, args.out)
    print(f"saved {args.out}")
    return args.out


if __name__ == "__main__":
    main()
