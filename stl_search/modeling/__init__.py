"""The person-search model. Importing this package registers its Detectron2 components:
``build_resnet_ibn_backbone`` (BACKBONE_REGISTRY), ``PersonSearchROIHeads`` (ROI_HEADS_REGISTRY),
``SyncFreeRPN`` (PROPOSAL_GENERATOR_REGISTRY) and ``PersonSearchRCNN`` (META_ARCH_REGISTRY)."""

from . import backbone  # noqa: F401
from .id_net import IdentificationNet
from .losses import build_id_loss, resolve_num_identities
from .meta_arch import PersonSearchRCNN
from .mrfp import MultiLevelRoIFusionPooler, SingleLevelRoIPooler, build_id_pooler
from .roi_heads import PersonSearchROIHeads

__all__ = [
    "IdentificationNet",
    "MultiLevelRoIFusionPooler",
    "PersonSearchRCNN",
    "PersonSearchROIHeads",
    "SingleLevelRoIPooler",
    "build_id_loss",
    "build_id_pooler",
    "resolve_num_identities",
]
