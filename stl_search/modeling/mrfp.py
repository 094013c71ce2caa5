"""RoI pooling for the identification branch: MRFP (paper 3.2) and the single-level baseline.

Both poolers take the backbone's feature dict and per-image boxes (in the input frame) and return
the RoI feature maps fed to the identification nets, ``(R, C, H, W)`` with ``C`` the high level's
channels and ``(H, W) = MODEL.ID_HEAD.POOLER_RESOLUTION`` (32x16 on the stride-8 ``res3``).

MRFP is built around two :class:`SingleLevelRoIPooler` (its high level is the baseline itself)
rather than one multi-level ``ROIPooler``, because Detectron2's multi-level ``ROIPooler`` assigns
each box to one level instead of pooling from all.
Aligned RoI Align runs through :class:`~stl_search.modeling.separable_roi_align.SeparableRoIAlign`.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import nn

from .backbone.resnet_ibn import make_resnet_ibn_stages
from .separable_roi_align import SeparableRoIAlign

__all__ = ["MultiLevelRoIFusionPooler", "SingleLevelRoIPooler", "build_id_pooler"]


def _pooler(
    resolution: Sequence[int], stride: int, sampling_ratio: int, pooler_type: str
) -> nn.Module:
    """One-level RoI pooling. ``ROIAlignV2`` (aligned RoI Align, the configs' choice) uses
    :class:`SeparableRoIAlign` (same numbers as torchvision's kernel, several times faster on
    the CPU); other types use Detectron2's ``ROIPooler``."""
    if pooler_type == "ROIAlignV2":
        return SeparableRoIAlign(resolution, 1.0 / stride, sampling_ratio)
    return ROIPooler(
        output_size=tuple(resolution),
        scales=(1.0 / stride,),
        sampling_ratio=sampling_ratio,
        pooler_type=pooler_type,
    )


def _single_level_args(
    in_feature: str,
    shape: ShapeSpec,
    resolution: Sequence[int],
    sampling_ratio: int,
    pooler_type: str,
) -> dict:
    """The :class:`SingleLevelRoIPooler` arguments for RoI pooling on one feature map."""
    return {
        "in_feature": in_feature,
        "pooler": _pooler(resolution, shape.stride, sampling_ratio, pooler_type),
        "channels": shape.channels,
        "stride": shape.stride,
    }


class SingleLevelRoIPooler(nn.Module):
    """The paper's baseline: RoI Align on one feature map (``res3``, 32x16). No parameters.

    Also each of MRFP's two levels (:class:`MultiLevelRoIFusionPooler`).
    """

    @configurable
    def __init__(
        self, *, in_feature: str, pooler: nn.Module, channels: int, stride: Optional[int] = None
    ):
        """
        Args:
            in_feature (str): name of the backbone feature map to pool from (e.g. ``"res3"``).
            pooler (nn.Module): one-level RoI pooling, called as ``pooler([feature], boxes)``
                and exposing ``output_size`` ``(H, W)``: a :class:`SeparableRoIAlign` or a
                single-scale ``ROIPooler``; its scale is ``1 / stride``.
            channels (int): channels of ``in_feature`` (and so of the RoI features).
            stride (int or None): stride of ``in_feature``, reported by :attr:`output_shape`.
        """
        super().__init__()
        self.in_feature = in_feature
        self.pooler = pooler
        self._channels = channels
        self._stride = stride

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h = cfg.MODEL.ID_HEAD
        return _single_level_args(
            h.IN_FEATURE,
            input_shape[h.IN_FEATURE],
            h.POOLER_RESOLUTION,
            h.POOLER_SAMPLING_RATIO,
            h.POOLER_TYPE,
        )

    @property
    def output_shape(self) -> ShapeSpec:
        """The RoI features: channels, (height, width) and the stride of the map they come from."""
        h, w = self.pooler.output_size
        return ShapeSpec(channels=self._channels, height=h, width=w, stride=self._stride)

    def forward(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        return self.pooler([features[self.in_feature]], boxes)


class MultiLevelRoIFusionPooler(nn.Module):
    """MRFP: ``neck(RoIAlign(res2, 64x32)) + RoIAlign(res3, 32x16)``.

    The low level keeps the person details that the detection-driven high level loses; the neck,
    a copy of the res3 stage with its *own* parameters (the paper: not shared with the base
    nets' res3), brings the low-level RoI features to the high level's size and semantics before
    the pixel-wise sum. The high level is exactly the single-level baseline's pooler. The neck's
    module name (``neck``) deliberately does not contain ``res3``: Detectron2's checkpoint name
    heuristics would otherwise find two matches for ``res3.*``. The two levels have no
    parameters, so the state dict holds ``neck.*`` only.
    """

    @configurable
    def __init__(self, *, low: SingleLevelRoIPooler, high: SingleLevelRoIPooler, neck: nn.Module):
        """
        Args:
            low (SingleLevelRoIPooler): RoI pooling on the low level (``res2``, 64x32).
            high (SingleLevelRoIPooler): RoI pooling on the high level (``res3``, 32x16), the
                single-level baseline's pooler; its output shape is MRFP's.
            neck (nn.Module): maps ``low``'s RoI features to ``high``'s shape (channels and
                size): a copy of the res3 stage, with its own parameters.
        """
        super().__init__()
        self.low = low
        self.high = high
        self.neck = neck

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h, m = cfg.MODEL.ID_HEAD, cfg.MODEL.MRFP
        if (h.IN_FEATURE, m.LOW_FEATURE) != ("res3", "res2"):
            # The neck is "the stage after the low level"; only res2 -> res3 is the paper's design.
            raise ValueError(
                f"MRFP fuses res2 into res3 (got MODEL.MRFP.LOW_FEATURE={m.LOW_FEATURE}, "
                f"MODEL.ID_HEAD.IN_FEATURE={h.IN_FEATURE})"
            )
        low_shape, high_shape = input_shape[m.LOW_FEATURE], input_shape[h.IN_FEATURE]
        ratio = high_shape.stride // low_shape.stride
        (lh, lw), (hh, hw) = m.LOW_RESOLUTION, h.POOLER_RESOLUTION
        if (lh, lw) != (hh * ratio, hw * ratio):
            raise ValueError(
                f"MODEL.MRFP.LOW_RESOLUTION {tuple(m.LOW_RESOLUTION)} must be "
                f"MODEL.ID_HEAD.POOLER_RESOLUTION {tuple(h.POOLER_RESOLUTION)} x {ratio} so "
                "that the neck output matches"
            )
        low_args = _single_level_args(
            m.LOW_FEATURE, low_shape, m.LOW_RESOLUTION, m.SAMPLING_RATIO, h.POOLER_TYPE
        )
        stages = make_resnet_ibn_stages(cfg, [h.IN_FEATURE], in_channels=low_shape.channels)
        return {
            "low": SingleLevelRoIPooler(**low_args),
            "high": SingleLevelRoIPooler(cfg, input_shape),
            "neck": stages[h.IN_FEATURE],
        }

    @property
    def output_shape(self) -> ShapeSpec:
        """The fused RoI features: the high level's channels, (height, width) and stride."""
        return self.high.output_shape

    def forward(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        high = self.high(features, boxes)
        low = self.low(features, boxes)
        if low.shape[0] == 0:
            return high
        # Out of place: the neck ends in a ReLU whose output autograd keeps for its backward.
        return self.neck(low) + high


def build_id_pooler(cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """MRFP when ``MODEL.MRFP.ENABLED``, else RoI Align on ``MODEL.ID_HEAD.IN_FEATURE`` only."""
    if cfg.MODEL.MRFP.ENABLED:
        return MultiLevelRoIFusionPooler(cfg, input_shape)
    return SingleLevelRoIPooler(cfg, input_shape)
