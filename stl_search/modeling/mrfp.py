"""RoI pooling for the identification branch: MRFP (paper 3.2) and the single-level baseline.

Both poolers take the backbone's feature dict and per-image boxes (in the input frame) and return
the RoI feature maps fed to the identification nets, ``(R, C, H, W)`` with ``C`` the high level's
channels and ``(H, W) = MODEL.ID_HEAD.POOLER_RESOLUTION`` (32x16 on the stride-8 ``res3``).

MRFP uses two *single-level* poolers rather than one multi-level ``ROIPooler``, because
Detectron2's multi-level ``ROIPooler`` assigns each box to one level instead of pooling from all.
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


class SingleLevelRoIPooler(nn.Module):
    """The paper's baseline: RoI Align on one feature map (``res3``, 32x16). No parameters."""

    @configurable
    def __init__(
        self, *, in_feature: str, pooler: nn.Module, channels: int, stride: Optional[int] = None
    ):
        super().__init__()
        self.in_feature = in_feature
        self.pooler = pooler
        self._channels = channels
        self._stride = stride

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h = cfg.MODEL.ID_HEAD
        shape = input_shape[h.IN_FEATURE]
        return {
            "in_feature": h.IN_FEATURE,
            "pooler": _pooler(
                h.POOLER_RESOLUTION, shape.stride, h.POOLER_SAMPLING_RATIO, h.POOLER_TYPE
            ),
            "channels": shape.channels,
            "stride": shape.stride,
        }

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
    the pixel-wise sum. The neck's module name (``neck``) deliberately does not contain ``res3``:
    Detectron2's checkpoint name heuristics would otherwise find two matches for ``res3.*``.
    """

    @configurable
    def __init__(
        self,
        *,
        low_feature: str,
        high_feature: str,
        low_pooler: nn.Module,
        high_pooler: nn.Module,
        neck: nn.Module,
        channels: int,
        stride: Optional[int] = None,
    ):
        super().__init__()
        self.low_feature = low_feature
        self.high_feature = high_feature
        self.low_pooler = low_pooler
        self.high_pooler = high_pooler
        self.neck = neck
        self._channels = channels
        self._stride = stride

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h, m = cfg.MODEL.ID_HEAD, cfg.MODEL.MRFP
        low, high = input_shape[m.LOW_FEATURE], input_shape[h.IN_FEATURE]
        if (h.IN_FEATURE, m.LOW_FEATURE) != ("res3", "res2"):
            # The neck is "the stage after the low level"; only res2 -> res3 is the paper's design.
            raise ValueError(
                f"MRFP fuses res2 into res3 (got LOW_FEATURE={m.LOW_FEATURE}, IN_FEATURE={h.IN_FEATURE})"
            )
        lh, lw = m.LOW_RESOLUTION
        hh, hw = h.POOLER_RESOLUTION
        ratio = high.stride // low.stride
        if (lh, lw) != (hh * ratio, hw * ratio):
            raise ValueError(
                f"MRFP.LOW_RESOLUTION {tuple(m.LOW_RESOLUTION)} must be POOLER_RESOLUTION "
                f"{tuple(h.POOLER_RESOLUTION)} x {ratio} so that the neck output matches"
            )
        neck = make_resnet_ibn_stages(cfg, [h.IN_FEATURE], in_channels=low.channels)[h.IN_FEATURE]
        return {
            "low_feature": m.LOW_FEATURE,
            "high_feature": h.IN_FEATURE,
            "low_pooler": _pooler(m.LOW_RESOLUTION, low.stride, m.SAMPLING_RATIO, h.POOLER_TYPE),
            "high_pooler": _pooler(
                h.POOLER_RESOLUTION, high.stride, h.POOLER_SAMPLING_RATIO, h.POOLER_TYPE
            ),
            "neck": neck,
            "channels": high.channels,
            "stride": high.stride,
        }

    @property
    def output_shape(self) -> ShapeSpec:
        """The fused RoI features: the high level's channels, (height, width) and stride."""
        h, w = self.high_pooler.output_size
        return ShapeSpec(channels=self._channels, height=h, width=w, stride=self._stride)

    def forward(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        high = self.high_pooler([features[self.high_feature]], boxes)
        low = self.low_pooler([features[self.low_feature]], boxes)
        if low.shape[0] == 0:
            return high
        # Out of place: the neck ends in a ReLU whose output autograd keeps for its backward.
        return self.neck(low) + high


def build_id_pooler(cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """MRFP when ``MODEL.MRFP.ENABLED``, else single-level RoI Align on ``MODEL.ID_HEAD.IN_FEATURE``."""
    if cfg.MODEL.MRFP.ENABLED:
        return MultiLevelRoIFusionPooler(cfg, input_shape)
    return SingleLevelRoIPooler(cfg, input_shape)
