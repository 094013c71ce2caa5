"""Losses of STL step 1, Eq. 1 of the paper: ``L_pre = L_id + L_tri + lambda * L_center``.

- :func:`id_loss`: cross-entropy over the training identities, optionally label-smoothed
  (BoT: ``(1 - eps) * onehot + eps / C``, which is exactly
  ``F.cross_entropy(label_smoothing=eps)``).
- :func:`batch_hard_triplet_loss` (Hermans et al. 2017): per anchor, its farthest positive and
  nearest negative in the batch, Euclidean distance, hinge with a margin or soft margin.
- :class:`CenterLoss` (Wen et al. 2016): squared distance of each feature to its identity's
  centre. The centres are trained by their own SGD optimiser; :meth:`CenterLoss.rescale_grad`
  divides their gradient by lambda so that the centre update does not depend on the weight of
  the loss in the total (the BoT recipe).

Features for the triplet and centre losses are the GAP features before the BN neck, the ID loss
uses the classifier on the BN-neck output (BoT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CenterLoss", "batch_hard_triplet_loss", "id_loss", "pairwise_euclidean"]


def id_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy ID loss, label-smoothed with ``label_smoothing`` (0 disables)."""
    return F.cross_entropy(logits, labels, label_smoothing=float(label_smoothing))


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """``N x N`` Euclidean distances between the rows of ``x`` (clamped away from 0 for the
    gradient of sqrt)."""
    sq = x.pow(2).sum(dim=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * (x @ x.t())
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, soft_margin: bool = False
) -> torch.Tensor:
    """Batch-hard triplet loss, averaged over the anchors that have a negative in the batch.

    Per anchor ``a``: ``d_ap = max`` distance to a sample of the same label (itself included, which
    only matters when it is alone), ``d_an = min`` distance to a sample of another label;
    loss ``max(0, d_ap - d_an + margin)``, or ``log(1 + exp(d_ap - d_an))`` with ``soft_margin``.
    """
    dist = pairwise_euclidean(embeddings)
    same = labels.view(-1, 1) == labels.view(1, -1)
    d_ap = dist.masked_fill(~same, float("-inf")).max(dim=1).values
    d_an = dist.masked_fill(same, float("inf")).min(dim=1).values
    valid = torch.isfinite(d_an)
    if not bool(valid.any()):
        return embeddings.sum() * 0.0
    diff = d_ap[valid] - d_an[valid]
    if soft_margin:
        return F.softplus(diff).mean()
    return F.relu(diff + margin).mean()


class CenterLoss(nn.Module):
    """``mean_i ||x_i - c_{y_i}||^2`` with a learnable centre ``c_j`` per identity.

    The centres are a parameter of this module (key ``centers``); keep them out of the main
    optimiser and update them with their own SGD (lr ``REID.LOSS.CENTER_LR``) after
    :meth:`rescale_grad`.
    """

    def __init__(self, num_classes: int, feature_dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feature_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (features - self.centers[labels]).pow(2).sum(dim=1).mean()

    def rescale_grad(self, weight: float) -> None:
        """Divide the centres' gradient by the loss weight lambda (BoT), before their SGD step."""
        if self.centers.grad is not None and weight > 0:
            self.centers.grad.mul_(1.0 / weight)
