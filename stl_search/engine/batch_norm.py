"""BatchNorm under data-parallel training: a warning when each process normalises too few images,
and synchronised BatchNorm as a switch.

The model's trainable BatchNorm layers (``MODEL.RESNETS.NORM "BN"``: the base nets, the BN half of
every IBN module, the identification nets, the MRFP neck, and the embedding BN ``BNNeck``) compute
their statistics over the images of one process. The paper trains with 16 images per batch; the
authors' code put 8 on each GPU. On 8 GPUs, 2 images per process give noisy statistics, and a
model trained so is not the paper's. ``MODEL.BATCH_NORM.SYNC`` converts every trainable BatchNorm
(1-D and 2-D) to ``torch.nn.SyncBatchNorm``, whose statistics span all processes; the parameters
and buffers are the same tensors under the same names, so checkpoints load either way. The
InstanceNorm half of IBN and ``FrozenBatchNorm2d`` are untouched.

``torch.nn.SyncBatchNorm`` synchronises CUDA tensors only: with CPU processes (gloo) the switch is
refused. In one process it is BatchNorm, and the model is left as built.
"""

from __future__ import annotations

import logging
from typing import Optional

from detectron2.config import CfgNode
from torch import nn

__all__ = ["batch_norm_warning", "convert_sync_batchnorm", "maybe_sync_batchnorm"]

logger = logging.getLogger(__name__)


def batch_norm_warning(cfg: CfgNode, world_size: int) -> Optional[str]:
    """The warning for ``cfg`` trained over ``world_size`` processes, or ``None``: when the model
    has trainable BatchNorm, is not synchronised and each process gets fewer than
    ``MODEL.BATCH_NORM.MIN_IMAGES_PER_PROCESS`` images."""
    per_process = cfg.SOLVER.IMS_PER_BATCH / max(world_size, 1)
    minimum = cfg.MODEL.BATCH_NORM.MIN_IMAGES_PER_PROCESS
    if cfg.MODEL.RESNETS.NORM != "BN" or cfg.MODEL.BATCH_NORM.SYNC or per_process >= minimum:
        return None
    return (
        f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} over {world_size} processes is "
        f"{per_process:g} images per process, below MODEL.BATCH_NORM.MIN_IMAGES_PER_PROCESS "
        f"{minimum}: every BatchNorm layer normalises with the statistics of {per_process:g} "
        "images (the authors trained with 8 per GPU). Set MODEL.BATCH_NORM.SYNC True "
        "(statistics over all processes; CUDA) or MODEL.RESNETS.NORM FrozenBN."
    )


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every ``BatchNorm1d``/``2d`` replaced by ``torch.nn.SyncBatchNorm`` holding
    the same parameter and buffer tensors (state-dict keys and values unchanged; a frozen BNNeck
    bias stays frozen)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def maybe_sync_batchnorm(cfg: CfgNode, model: nn.Module, world_size: int) -> nn.Module:
    """Apply ``MODEL.BATCH_NORM``: log :func:`batch_norm_warning`, and convert ``model`` with
    :func:`convert_sync_batchnorm` when ``SYNC`` is on and there is more than one process.

    Raises:
        ValueError: ``SYNC`` with several CPU processes (torch's SyncBatchNorm needs CUDA).
    """
    warning = batch_norm_warning(cfg, world_size)
    if warning:
        logger.warning(warning)
    if not cfg.MODEL.BATCH_NORM.SYNC or world_size <= 1:
        return model
    if not str(cfg.MODEL.DEVICE).startswith("cuda"):
        raise ValueError(
            f"MODEL.BATCH_NORM.SYNC True with {world_size} processes on MODEL.DEVICE "
            f"{cfg.MODEL.DEVICE!r}: torch's SyncBatchNorm synchronises CUDA tensors only"
        )
    logger.info("BatchNorm synchronised over %d processes (MODEL.BATCH_NORM.SYNC)", world_size)
    return convert_sync_batchnorm(model)
