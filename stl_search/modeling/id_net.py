"""Identification nets (paper 3.3): res4 + res5 (first stride ``MODEL.IBN.RES5_STRIDE`` = 1) +
GAP + BNNeck.

Their own copies of the backbone's res4 and res5 (the base nets stop at res3); the embedding is
the output of ``bnneck``, a ``BatchNorm1d`` whose bias is frozen at 0 (BNNeck, Luo et al. 2019,
as in the authors' code). Both the ID loss and retrieval use this embedding; retrieval
L2-normalises it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn

from .backbone.resnet_ibn import make_resnet_ibn_stages, stage_out_channels

__all__ = ["BNNeck", "IdentificationNet"]


class BNNeck(nn.BatchNorm1d):
    """``BatchNorm1d`` with a frozen zero bias. In training with a single sample (one labeled
    RoI in the whole batch) it normalises with its running statistics instead of failing."""

    def __init__(self, num_features: int):
        super().__init__(num_features)
        self.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


class IdentificationNet(nn.Module):
    """RoI feature maps ``(R, C_res3, H, W)`` -> embeddings ``(R, D)`` (not normalised)."""

    @configurable
    def __init__(self, *, res4: nn.Module, res5: nn.Module, embedding_dim: int):
        """
        Args:
            res4 (nn.Module): the identification nets' own res4 stage, taking the RoI features.
            res5 (nn.Module): their own res5 stage (first stride ``MODEL.IBN.RES5_STRIDE``).
            embedding_dim (int): channels of ``res5``'s output, the embedding size ``D``; the
                :class:`BNNeck` is built with it.
        """
        super().__init__()
        self.res4 = res4
        self.res5 = res5
        self.bnneck = BNNeck(embedding_dim)
        self.embedding_dim = embedding_dim

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec) -> dict:
        stages = make_resnet_ibn_stages(cfg, ["res4", "res5"], in_channels=input_shape.channels)
        dim = stage_out_channels(cfg, "res5")
        if cfg.MODEL.ID_HEAD.EMBEDDING_DIM != dim:
            raise ValueError(
                f"MODEL.ID_HEAD.EMBEDDING_DIM={cfg.MODEL.ID_HEAD.EMBEDDING_DIM} but res5 of this "
                f"ResNet has {dim} channels (the embedding is res5's pooled output): set "
                f"MODEL.ID_HEAD.EMBEDDING_DIM {dim}"
            )
        return {"res4": stages["res4"], "res5": stages["res5"], "embedding_dim": dim}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x.new_zeros((0, self.embedding_dim))
        x = self.res5(self.res4(x))
        return self.bnneck(x.mean(dim=(2, 3)))
