"""``ReIDNet``: the STL step 1 network (paper 3.1, Figure 2; the BoT pipeline of Luo et al.).

The whole ResNet-IBN-a (stem..res5, res5 first stride ``MODEL.IBN.RES5_STRIDE``) from the same
builder as the person-search model, global average pooling, a BN neck (``BatchNorm1d``, frozen
zero bias) and a bias-free ID classifier. Its parameters are named so that STL step 2
(:mod:`stl_search.reid.stl_init`) maps them one to one onto the person-search model:
``backbone.{stem,res2,res3,res4,res5}.*``, ``bnneck.*``, ``classifier.*``; the centre-loss
centres (``center_loss.centers``) are training state only and are not exported.

Input: a dict ``{"images": float (N, 3, H, W) already normalised, "person_ids": int64 (N,)}``
as built by :mod:`stl_search.data.reid.build`. Training returns the losses of Eq. 1
(``loss_id``, ``loss_triplet``, ``loss_center`` = lambda * L_center, the last two when enabled);
inference returns the BN-neck features (N, D), to be L2-normalised for retrieval.
"""

from __future__ import annotations

from typing import Dict, Union

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from detectron2.utils.events import get_event_storage
from torch import nn

from ..modeling.backbone.resnet_ibn import build_resnet_ibn_backbone
from ..modeling.id_net import BNNeck
from .losses import CenterLoss, batch_hard_triplet_loss, id_loss

__all__ = ["ReIDNet", "reid_backbone_cfg"]


def reid_backbone_cfg(cfg: CfgNode) -> CfgNode:
    """``cfg`` with the backbone settings of the Re-ID network: the whole ResNet (``OUT_FEATURES
    ["res5"]``) and nothing frozen (STL pretrains every layer)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return cfg


class ReIDNet(nn.Module):
    """Backbone + GAP + BN neck + classifier, with the losses of Eq. 1; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        use_triplet: bool = True,
        triplet_margin: float = 0.3,
        triplet_soft_margin: bool = False,
        use_center: bool = True,
        center_weight: float = 5e-4,
        label_smoothing: float = 0.0,
    ):
        """
        Args:
            backbone (Backbone): the whole ResNet-IBN-a; its last output feature (``res5``) is
                pooled into the feature of dimension ``D`` (its channels).
            num_classes (int): number of training identities (the classifier's outputs and
                the centre-loss centres).
            use_triplet (bool): add the batch-hard triplet loss ``loss_triplet``.
            triplet_margin (float): its margin (unused with ``triplet_soft_margin``).
            triplet_soft_margin (bool): use the soft margin ``log(1 + exp(d_ap - d_an))``.
            use_center (bool): add the centre loss ``loss_center`` (and its centres).
            center_weight (float): lambda, the centre loss's weight in Eq. 1.
            label_smoothing (float): label smoothing epsilon of the ID loss (0 disables).
        """
        super().__init__()
        self.backbone = backbone
        self.in_feature = backbone._out_features[-1]
        dim = backbone.output_shape()[self.in_feature].channels
        self.feature_dim = dim
        self.bnneck = BNNeck(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.use_triplet, self.triplet_margin = use_triplet, triplet_margin
        self.triplet_soft_margin = triplet_soft_margin
        self.center_weight = center_weight
        self.center_loss = CenterLoss(num_classes, dim) if use_center else None
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, cfg: CfgNode, num_classes: int) -> dict:
        loss = cfg.REID.LOSS
        backbone = build_resnet_ibn_backbone(
            reid_backbone_cfg(cfg), ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
        )
        return {
            "backbone": backbone,
            "num_classes": num_classes,
            "use_triplet": loss.TRIPLET,
            "triplet_margin": loss.TRIPLET_MARGIN,
            "triplet_soft_margin": loss.TRIPLET_SOFT_MARGIN,
            "use_center": loss.CENTER,
            "center_weight": loss.CENTER_WEIGHT,
            "label_smoothing": loss.LABEL_SMOOTHING,
        }

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def main_parameters(self):
        """Trainable parameters of the main (Adam) optimiser: everything but the centres."""
        skip = (
            {id(p) for p in self.center_loss.parameters()}
            if self.center_loss is not None
            else set()
        )
        return [p for p in self.parameters() if p.requires_grad and id(p) not in skip]

    def forward(
        self, batch: Dict[str, torch.Tensor]
    ) -> Union[Dict[str, torch.Tensor], torch.Tensor]:
        images = batch["images"].to(self.device, non_blocking=True)
        global_feat = self.backbone(images)[self.in_feature].mean(dim=(2, 3))
        feat = self.bnneck(global_feat)
        if not self.training:
            return feat
        labels = batch["person_ids"].to(self.device, non_blocking=True)
        logits = self.classifier(feat)
        losses = {"loss_id": id_loss(logits, labels, self.label_smoothing)}
        if self.use_triplet:
            losses["loss_triplet"] = batch_hard_triplet_loss(
                global_feat, labels, self.triplet_margin, self.triplet_soft_margin
            )
        if self.center_loss is not None:
            losses["loss_center"] = self.center_weight * self.center_loss(global_feat, labels)
        try:
            storage = get_event_storage()
        except AssertionError:  # called outside a trainer
            storage = None
        if storage is not None:
            acc = (logits.detach().argmax(dim=1) == labels).float().mean()
            storage.put_scalar("reid/cls_accuracy", float(acc))
        return losses
