"""Identification losses L_id (paper Eq. 3, Tables 3-4), chosen by ``MODEL.PERSON_SEARCH.ID_LOSS``.

- ``CE``: softmax cross-entropy over the labeled training identities (the paper's loss).
- ``CB_CE``: class-balanced CE (Cui et al., CVPR 2019): class c weighs
  ``(1 - beta) / (1 - beta^n_c)`` with ``n_c`` its number of labeled boxes in the training set,
  weights scaled to sum to the number of classes; the loss is the mean of the weighted per-box
  losses.
- ``FOCAL``: focal loss ``-(1 - p_t)^gamma log p_t`` (Lin et al., 2017); gamma = 0 is CE.
- ``OIM``: online instance matching (Xiao et al., CVPR 2017): cosine similarities, times a scale,
  to a look-up table of labeled identities (momentum updates) and a circular queue of unlabeled
  features; so that STL can be applied to an OIM-style model (Table 3).

Every loss takes the (un-normalised) embeddings and int64 labels, ``-1`` for unlabeled persons:
those take no loss (CE family) or only fill the queue (OIM). The CE family's classifier is
``Linear(D, num_ids, bias=False)`` initialised N(0, 0.001), as in the authors' code.
"""

from __future__ import annotations

from typing import Iterable, List, Mapping, Optional

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.utils import comm
from torch import nn

__all__ = [
    "OIMLoss",
    "SoftmaxIDLoss",
    "build_id_loss",
    "class_balanced_weights",
    "identity_instance_counts",
    "resolve_num_identities",
]


def resolve_num_identities(cfg: CfgNode) -> int:
    """``MODEL.PERSON_SEARCH.NUM_IDENTITIES``; 0 is resolved before the model is built (from the
    training set or the weights file: ``stl_search.engine.model``)."""
    n = cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES
    if n <= 0:
        raise ValueError(
            "MODEL.PERSON_SEARCH.NUM_IDENTITIES is 0: set it, or build the model through "
            "stl_search.engine (the trainer reads it from DATASETS.TRAIN, an inference model "
            "from its weights file)"
        )
    return n


def identity_instance_counts(dataset_dicts: Iterable[Mapping], num_ids: int) -> torch.Tensor:
    """Number of labeled boxes per training identity (``person_id`` 0..num_ids-1) in scene dicts."""
    counts = torch.zeros(num_ids, dtype=torch.float64)
    for d in dataset_dicts:
        for a in d.get("annotations", ()):
            pid = a.get("person_id", -1)
            if 0 <= pid < num_ids:
                counts[pid] += 1
    return counts


def class_balanced_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Effective-number weights ``(1 - beta) / (1 - beta^n_c)``, scaled to sum to ``len(counts)``.

    Identities with no box (``n_c = 0``) get the weight of a single box (they never occur as
    targets anyway, and this keeps the weights finite).
    """
    n = counts.to(torch.float64).clamp(min=1.0)
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    w = w * (len(w) / w.sum())
    return w.to(torch.float32)


class SoftmaxIDLoss(nn.Module):
    """CE, class-balanced CE (``class_weights``) or focal loss (``gamma`` > 0) over a linear
    classifier."""

    def __init__(
        self,
        embedding_dim: int,
        num_ids: int,
        *,
        class_weights: Optional[torch.Tensor] = None,
        gamma: float = 0.0,
    ):
        super().__init__()
        self.classifier = nn.Linear(embedding_dim, num_ids, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        # Not persistent: recomputed from the training set when the model is built, so a CE
        # checkpoint loads into a CB_CE model and back without key mismatches.
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.gamma = gamma

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        keep = labels >= 0
        logits = self.classifier(embeddings[keep])
        y = labels[keep]
        if y.numel() == 0:
            return logits.sum() * 0.0 + self.classifier.weight.sum() * 0.0
        logp = F.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0]
        loss = -logp
        if self.gamma > 0:
            loss = loss * (1.0 - logp.exp()).pow(self.gamma)
        if self.class_weights is not None:
            loss = loss * self.class_weights[y]
        return loss.mean()


class OIMLoss(nn.Module):
    """Online instance matching with a labeled look-up table and an unlabeled circular queue.

    Buffers (saved in checkpoints): ``lut`` (num_ids x D), ``queue`` (queue_size x D),
    ``queue_ptr``. In training, after computing the loss, labeled features update their LUT row
    ``v <- normalise(m v + (1 - m) x)`` and unlabeled features overwrite the oldest queue entries;
    under distributed training the features of all processes are used.
    """

    def __init__(
        self, embedding_dim: int, num_ids: int, *, queue_size: int, scalar: float, momentum: float
    ):
        super().__init__()
        self.num_ids = num_ids
        self.scalar = scalar
        self.momentum = momentum
        self.register_buffer("lut", torch.zeros(num_ids, embedding_dim))
        self.register_buffer("queue", torch.zeros(queue_size, embedding_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.normalize(embeddings, dim=1)
        keep = labels >= 0
        table = torch.cat([self.lut, self.queue], dim=0)  # a copy: the updates below don't touch it
        logits = self.scalar * x[keep] @ table.t()
        y = labels[keep]
        if y.numel() == 0:
            loss = embeddings.sum() * 0.0
        else:
            loss = F.cross_entropy(logits, y)
        if self.training:
            self._update(x.detach(), labels)
        return loss

    @torch.no_grad()
    def _update(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        if comm.get_world_size() > 1:
            gathered: List = comm.all_gather((x.cpu(), labels.cpu()))
            x = torch.cat([g[0] for g in gathered]).to(self.lut.device)
            labels = torch.cat([g[1] for g in gathered]).to(self.lut.device)
        m = self.momentum
        for xi, yi in zip(x[labels >= 0], labels[labels >= 0].tolist()):
            self.lut[yi] = F.normalize(m * self.lut[yi] + (1.0 - m) * xi, dim=0)
        unlabeled = x[labels < 0]
        q = self.queue.shape[0]
        if q == 0 or unlabeled.shape[0] == 0:
            return
        unlabeled = unlabeled[-q:]
        idx = (self.queue_ptr + torch.arange(unlabeled.shape[0], device=x.device)) % q
        self.queue[idx] = unlabeled
        self.queue_ptr.fill_(int((self.queue_ptr + unlabeled.shape[0]) % q))


def build_id_loss(
    cfg: CfgNode, embedding_dim: int, identity_counts: Optional[torch.Tensor] = None
) -> nn.Module:
    """The ID loss module named by ``MODEL.PERSON_SEARCH.ID_LOSS``.

    ``identity_counts`` (per-identity labeled box counts) is only used by ``CB_CE``; when not
    given it is ``MODEL.PERSON_SEARCH.IDENTITY_COUNTS`` (the trainer counts them in the training
    set).
    """
    ps = cfg.MODEL.PERSON_SEARCH
    num_ids = resolve_num_identities(cfg)
    kind = ps.ID_LOSS.upper()
    if kind == "CE":
        return SoftmaxIDLoss(embedding_dim, num_ids)
    if kind == "FOCAL":
        return SoftmaxIDLoss(embedding_dim, num_ids, gamma=ps.FOCAL_GAMMA)
    if kind == "CB_CE":
        if identity_counts is None:
            identity_counts = torch.tensor(ps.IDENTITY_COUNTS, dtype=torch.float64)
        if len(identity_counts) != num_ids:
            raise ValueError(f"{len(identity_counts)} identity counts for {num_ids} identities")
        weights = class_balanced_weights(identity_counts, ps.CB_BETA)
        return SoftmaxIDLoss(embedding_dim, num_ids, class_weights=weights)
    if kind == "OIM":
        return OIMLoss(
            embedding_dim,
            num_ids,
            queue_size=ps.OIM_QUEUE_SIZE,
            scalar=ps.OIM_SCALAR,
            momentum=ps.OIM_MOMENTUM,
        )
    raise ValueError(
        f"unknown MODEL.PERSON_SEARCH.ID_LOSS {ps.ID_LOSS!r}; expected CE, CB_CE, FOCAL or OIM"
    )
