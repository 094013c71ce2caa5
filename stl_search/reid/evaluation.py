"""Re-ID evaluation of the STL pretraining network on the crop test set (paper 4.5, Table 6).

Protocol (Market-1501 style, vectorised): features are L2-normalised, gallery crops are ranked by
cosine similarity to each query crop, and per query the following gallery entries are *junk*
(removed from the ranking, neither positive nor negative):

- gallery crops with an unknown identity (``identity < 0``): they may be the query person;
- crops of the query's identity from the *same camera* when both camera ids are known (PRW),
  as Market-1501 does, so that retrieval is cross-camera;
- crops of the query's identity from the *same image* (always; this is the rule that remains for
  CUHK-SYSU, whose camera ids are unknown, ``-1``): it removes the query crop itself.

AP is the non-interpolated mean of the precision at each true match; rank-k (CMC) is whether a
true match is among the first ``k`` non-junk entries. Queries without any true match in the
gallery are skipped, as in Market-1501, and counted in ``num_skipped``.
"""

from __future__ import annotations

import logging
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import torch
from detectron2.utils import comm

__all__ = ["extract_features", "reid_metrics"]

logger = logging.getLogger(__name__)


def _as_np(x: Sequence) -> np.ndarray:
    return np.asarray(x)


def reid_metrics(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    query_ids: Sequence[int],
    gallery_ids: Sequence[int],
    query_cams: Optional[Sequence[int]] = None,
    gallery_cams: Optional[Sequence[int]] = None,
    query_images: Optional[Sequence[str]] = None,
    gallery_images: Optional[Sequence[str]] = None,
    topk: Iterable[int] = (1, 5, 10),
    chunk_size: int = 256,
) -> Dict[str, float]:
    """mAP and CMC rank-k (in %) of ``query_features`` (Q x D) against ``gallery_features`` (G x D).

    ``*_cams`` and ``*_images`` are optional (missing: unknown); see the module docstring for the
    junk rules. Memory is ``chunk_size x G`` per step.

    Returns:
        ``{"mAP", "rank1", "rank5", ..., "num_queries", "num_skipped"}``.
    """
    qf = torch.nn.functional.normalize(
        torch.as_tensor(np.asarray(query_features), dtype=torch.float32), dim=1
    )
    gf = torch.nn.functional.normalize(
        torch.as_tensor(np.asarray(gallery_features), dtype=torch.float32), dim=1
    )
    q_ids, g_ids = _as_np(query_ids).astype(np.int64), _as_np(gallery_ids).astype(np.int64)
    nq, ng = len(q_ids), len(g_ids)
    q_cams = _as_np(query_cams).astype(np.int64) if query_cams is not None else np.full(nq, -1)
    g_cams = _as_np(gallery_cams).astype(np.int64) if gallery_cams is not None else np.full(ng, -1)
    if query_images is not None and gallery_images is not None:
        names = {n: i for i, n in enumerate(sorted(set(query_images) | set(gallery_images)))}
        q_img = np.array([names[n] for n in query_images], dtype=np.int64)
        g_img = np.array([names[n] for n in gallery_images], dtype=np.int64)
    else:
        q_img, g_img = np.full(nq, -1), np.full(ng, -2)
    topk = sorted(set(int(k) for k in topk))

    aps, first_ranks = [], []
    for s in range(0, nq, chunk_size):
        e = min(s + chunk_size, nq)
        sim = (qf[s:e] @ gf.t()).numpy()
        same_id = q_ids[s:e, None] == g_ids[None, :]
        same_cam = (q_cams[s:e, None] == g_cams[None, :]) & (q_cams[s:e, None] >= 0)
        same_img = q_img[s:e, None] == g_img[None, :]
        junk = (g_ids[None, :] < 0) | (same_id & (same_cam | same_img))
        match = same_id & ~junk

        order = np.argsort(-sim, axis=1, kind="stable")
        match = np.take_along_axis(match, order, axis=1)
        valid = ~np.take_along_axis(junk, order, axis=1)
        rank = np.cumsum(valid, axis=1)  # 1-based rank among non-junk entries
        hits = np.cumsum(match, axis=1)
        n_pos = match.sum(axis=1)
        keep = n_pos > 0
        precision = np.where(match, hits / np.maximum(rank, 1), 0.0)
        aps.append(precision.sum(axis=1)[keep] / n_pos[keep])
        first = np.argmax(match, axis=1)
        first_ranks.append(rank[np.arange(e - s), first][keep])

    ap = np.concatenate(aps) if aps else np.zeros(0)
    first_rank = np.concatenate(first_ranks) if first_ranks else np.zeros(0)
    n = len(ap)
    if n < nq:
        logger.warning(
            "Re-ID evaluation: %d of %d queries have no true match in the gallery; skipped",
            nq - n,
            nq,
        )
    out: Dict[str, float] = {"mAP": float(ap.mean() * 100) if n else 0.0}
    for k in topk:
        out[f"rank{k}"] = float((first_rank <= k).mean() * 100) if n else 0.0
    out["num_queries"] = float(n)
    out["num_skipped"] = float(nq - n)
    return out


@torch.no_grad()
def extract_features(model: torch.nn.Module, data_loader: Iterable) -> torch.Tensor:
    """Features of every batch of ``data_loader`` (dicts with ``images``, ``index``), gathered from
    all processes and put back in dataset order on the main process (empty tensor elsewhere).

    ``model`` is switched to eval mode for the pass and restored afterwards.
    """
    was_training = model.training
    model.eval()
    feats, indices = [], []
    try:
        for batch in data_loader:
            feats.append(model(batch).float().cpu())
            indices.append(torch.as_tensor(batch["index"]))
    finally:
        model.train(was_training)
    local_f = torch.cat(feats) if feats else torch.zeros(0)
    local_i = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
    gathered = comm.gather((local_f, local_i), dst=0)
    if not comm.is_main_process():
        return torch.zeros(0)
    parts = [p for p in gathered if p[1].numel()]
    all_f = torch.cat([p[0] for p in parts])
    all_i = torch.cat([p[1] for p in parts])
    out = torch.empty_like(all_f)
    out[all_i] = all_f
    return out
