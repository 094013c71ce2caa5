"""ResNet-IBN-a on Detectron2's ResNet: one builder for the person-search base nets, the
identification nets, the MRFP neck and the STL Re-ID pretraining network.

IBN-a (Pan et al., IBN-Net, ECCV 2018) replaces the norm after the *first* conv of every residual
block of res2-res4 by an :class:`IBN` module: InstanceNorm on the first ``int(C * RATIO)``
channels (appearance invariance, which is what Re-ID wants), the configured batch norm on the
rest (content discrimination). res5 and the stem stay plain.

Parameter names are Detectron2's (``stem.conv1.*``, ``res2.0.conv1.norm.{IN,BN}.*``, ...), so a
converted torchvision IBN-a checkpoint (``layer1.0.bn1.IN.weight``) loads with Detectron2's
name heuristics and the STL export copies stage prefixes one to one.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from detectron2.config import CfgNode
from detectron2.layers import CNNBlockBase, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet
from torch import nn

from ...compat import drop_frozen_batchnorm_counters

__all__ = [
    "BLOCKS_PER_STAGE",
    "IBN",
    "IBNBasicBlock",
    "IBNBottleneckBlock",
    "STAGE_NAMES",
    "build_resnet_ibn_backbone",
    "imagenet_widths",
    "make_resnet_ibn_stages",
    "make_sequential_stage",
    "stage_out_channels",
]

#: Residual stages in order; index + 2 is the stage number (res2 has stride 4).
STAGE_NAMES = ("res2", "res3", "res4", "res5")

#: Residual blocks of res2..res5 per depth (18/34: basic blocks, 50 and deeper: bottlenecks).
BLOCKS_PER_STAGE = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


class IBN(nn.Module):
    """Instance-batch normalisation: ``IN`` on the first ``int(C * ratio)`` channels, ``BN`` on
    the rest.

    ``BN`` is whatever ``norm`` names (``"BN"``, ``"FrozenBN"``, ``"SyncBN"``, ...), so freezing a
    block (``FrozenBatchNorm2d.convert_frozen_batchnorm``) converts it like any other batch norm;
    the InstanceNorm keeps no running statistics and behaves the same in train and eval.
    """

    def __init__(self, channels: int, ratio: float = 0.5, norm: Union[str, type] = "BN"):
        super().__init__()
        half = int(channels * ratio)
        if not 0 < half < channels:
            raise ValueError(f"IBN ratio {ratio} leaves no IN or no BN channels out of {channels}")
        self.half = half
        self.IN = nn.InstanceNorm2d(half, affine=True)
        self.BN = get_norm(norm, channels - half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.BN, nn.Identity) and not (torch.is_grad_enabled() and x.requires_grad):
            return self._forward_bn_folded(x)
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        # For one image both halves are already contiguous: .contiguous() copies nothing.
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), dim=1)

    def _forward_bn_folded(self, x: torch.Tensor) -> torch.Tensor:
        """Inference with the BN half folded into the conv before it (the fast path,
        ``stl_search.modeling.fast_path``): the second half passes as is, the first half is
        instance-normalised in place, in any memory layout (no split / copy / concatenation)."""
        a = x[:, : self.half]
        var, mean = torch.var_mean(
            a if a.dtype == torch.float32 else a.float(), dim=(2, 3), unbiased=False, keepdim=True
        )
        scale = var.add_(self.IN.eps).rsqrt_()
        if self.IN.affine:
            scale.mul_(self.IN.weight.view(1, -1, 1, 1))
            shift = torch.addcmul(self.IN.bias.view(1, -1, 1, 1), mean, scale, value=-1.0)
        else:
            shift = mean.mul_(scale).neg_()
        if a.dtype != torch.float32:
            scale, shift = scale.to(a.dtype), shift.to(a.dtype)
        a.mul_(scale).add_(shift)
        return x


class IBNBottleneckBlock(BottleneckBlock):
    """Detectron2's bottleneck block with :class:`IBN` as the norm of its first 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, *, ibn_ratio: float = 0.5, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        self.conv1.norm = IBN(self.conv1.out_channels, ibn_ratio, kwargs.get("norm", "BN"))


class IBNBasicBlock(BasicBlock):
    """Detectron2's basic block (ResNet-18/34) with :class:`IBN` as the norm of its first conv."""

    def __init__(self, in_channels: int, out_channels: int, *, ibn_ratio: float = 0.5, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        self.conv1.norm = IBN(self.conv1.out_channels, ibn_ratio, kwargs.get("norm", "BN"))


def imagenet_widths(depth: int) -> Dict[str, int]:
    """The width keys of the ImageNet ResNet of ``depth``, as config overrides.

    Basic blocks (ResNet-18/34) do not expand their channels: res2 is as wide as the stem (64) and
    res5, the embedding, has 512 channels. Bottlenecks (ResNet-50 and deeper) expand 4x: res2 256,
    res5 2048. Detectron2's ``build_resnet_backbone`` requires the same (``RES2_OUT_CHANNELS`` 64
    for R18/R34); its defaults are the bottleneck widths.
    """
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}"
        )
    res2 = 64 if depth < 50 else 256
    return {
        "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": res2,
        "MODEL.ID_HEAD.EMBEDDING_DIM": res2 * 8,
    }


def _check_cfg(cfg: CfgNode) -> None:
    r = cfg.MODEL.RESNETS
    widths = imagenet_widths(r.DEPTH)
    if r.DEPTH < 50 and (r.RES2_OUT_CHANNELS != r.STEM_OUT_CHANNELS or r.RES5_DILATION != 1):
        # Without this check DEPTH 18 alone keeps the bottleneck default res2 of 256 and builds a
        # 178M-parameter basic-block network into which no ImageNet ResNet-18 weight fits.
        overrides = " ".join(f"{k} {v}" for k, v in widths.items())
        raise ValueError(
            f"MODEL.RESNETS.DEPTH {r.DEPTH} uses basic blocks, whose res2 is as wide as the stem "
            f"and which have no dilation: MODEL.RESNETS.RES2_OUT_CHANNELS must equal "
            f"STEM_OUT_CHANNELS and RES5_DILATION be 1, got RES2_OUT_CHANNELS "
            f"{r.RES2_OUT_CHANNELS}, STEM_OUT_CHANNELS {r.STEM_OUT_CHANNELS}, RES5_DILATION "
            f"{r.RES5_DILATION}. The ImageNet ResNet-{r.DEPTH} widths are: {overrides}"
        )
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "ResNet-IBN-a has no deformable-conv variant (MODEL.RESNETS.DEFORM_ON_PER_STAGE)"
        )
    unknown = set(cfg.MODEL.IBN.STAGES) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"MODEL.IBN.STAGES has unknown stages {sorted(unknown)}")


def stage_out_channels(cfg: CfgNode, name: str) -> int:
    """Output channels of stage ``name`` (``"stem"`` or ``res2``..``res5``) under ``cfg``."""
    r = cfg.MODEL.RESNETS
    if name == "stem":
        return r.STEM_OUT_CHANNELS
    idx = STAGE_NAMES.index(name)
    return r.RES2_OUT_CHANNELS * 2**idx


def _stage_blocks(cfg: CfgNode, name: str, in_channels: int) -> List[CNNBlockBase]:
    """The blocks of one residual stage ``name`` built from ``cfg`` (not yet a Sequential)."""
    r = cfg.MODEL.RESNETS
    idx = STAGE_NAMES.index(name)
    depth = r.DEPTH
    num_blocks = BLOCKS_PER_STAGE[depth][idx]
    if name == "res2":
        first_stride = 1
    elif name == "res5":
        first_stride = cfg.MODEL.IBN.RES5_STRIDE
    else:
        first_stride = 2
    use_ibn = name in cfg.MODEL.IBN.STAGES
    kwargs = {
        "num_blocks": num_blocks,
        "in_channels": in_channels,
        "out_channels": stage_out_channels(cfg, name),
        "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
        "norm": r.NORM,
    }
    if depth < 50:
        kwargs["block_class"] = IBNBasicBlock if use_ibn else BasicBlock
    else:
        kwargs["block_class"] = IBNBottleneckBlock if use_ibn else BottleneckBlock
        kwargs["bottleneck_channels"] = r.NUM_GROUPS * r.WIDTH_PER_GROUP * 2**idx
        kwargs["num_groups"] = r.NUM_GROUPS
        kwargs["stride_in_1x1"] = r.STRIDE_IN_1X1
        kwargs["dilation"] = r.RES5_DILATION if name == "res5" else 1
    if use_ibn:
        kwargs["ibn_ratio"] = cfg.MODEL.IBN.RATIO
    return ResNet.make_stage(**kwargs)


def make_resnet_ibn_stages(
    cfg: CfgNode, names: Iterable[str], in_channels: Optional[int] = None
) -> Dict[str, nn.Sequential]:
    """Build residual stages ``names`` (any of res2..res5, in order) as fresh, trainable modules.

    Used for the identification nets (res4 + res5), the MRFP neck (a res3 copy with its own
    parameters) and anything else that needs a stage outside the backbone. ``in_channels``
    overrides the input channels of the first requested stage (default: the output channels of
    the stage before it under ``cfg``). res5's first stride is ``MODEL.IBN.RES5_STRIDE``.
    Freezing (``FREEZE_AT``) is not applied here: it concerns the base nets only.

    Returns:
        ``{name: nn.Sequential(blocks)}`` in the order given; assign the values as attributes
        named ``name`` so that state-dict keys read ``<prefix>.<name>.<block>.*``.
    """
    _check_cfg(cfg)
    names = list(names)
    out: Dict[str, nn.Sequential] = {}
    for i, name in enumerate(names):
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; expected one of {STAGE_NAMES}")
        if i == 0:
            prev = "stem" if name == "res2" else STAGE_NAMES[STAGE_NAMES.index(name) - 1]
            c_in = in_channels if in_channels is not None else stage_out_channels(cfg, prev)
        else:
            prev_idx = STAGE_NAMES.index(names[i - 1])
            if STAGE_NAMES.index(name) != prev_idx + 1:
                raise ValueError(f"stages must be consecutive, got {names}")
            c_in = stage_out_channels(cfg, names[i - 1])
        out[name] = nn.Sequential(*_stage_blocks(cfg, name, c_in))
    return out


def make_sequential_stage(**make_stage_kwargs) -> nn.Sequential:
    """One residual stage as a module: ``nn.Sequential`` of Detectron2's
    ``ResNet.make_stage(**make_stage_kwargs)`` (``block_class``, ``num_blocks``, ``in_channels``,
    ``out_channels``, ``stride_per_block``, ``norm``, ``ibn_ratio``, ...). The stage modules of
    :func:`make_resnet_ibn_stages` without a yacs config, for LazyConfig files
    (``configs/lazy/``)."""
    return nn.Sequential(*ResNet.make_stage(**make_stage_kwargs))


@BACKBONE_REGISTRY.register()
def build_resnet_ibn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """ResNet-IBN-a backbone (Detectron2 ``ResNet``) with stages up to the last of ``OUT_FEATURES``.

    Honours ``MODEL.RESNETS.{DEPTH, NORM, STEM_OUT_CHANNELS, RES2_OUT_CHANNELS, NUM_GROUPS,
    WIDTH_PER_GROUP, STRIDE_IN_1X1, RES5_DILATION, OUT_FEATURES}``, ``MODEL.BACKBONE.FREEZE_AT``
    and ``MODEL.IBN.*``. The person-search model asks for ``["res2", "res3"]`` (the base nets);
    the Re-ID pretraining network for ``["res5"]`` (res5 first stride ``MODEL.IBN.RES5_STRIDE``).
    """
    _check_cfg(cfg)
    r = cfg.MODEL.RESNETS
    out_features: Sequence[str] = r.OUT_FEATURES
    stem = BasicStem(
        in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM
    )
    order = {"stem": 0, "res2": 1, "res3": 2, "res4": 3, "res5": 4}
    num_stages = max(order[f] for f in out_features)
    stages: List[List[CNNBlockBase]] = []
    in_channels = r.STEM_OUT_CHANNELS
    for name in STAGE_NAMES[:num_stages]:
        stages.append(_stage_blocks(cfg, name, in_channels))
        in_channels = stage_out_channels(cfg, name)
    backbone = ResNet(
        stem, stages, out_features=list(out_features), freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT
    )
    return drop_frozen_batchnorm_counters(backbone)  # one state-dict layout on v0.6 and main
