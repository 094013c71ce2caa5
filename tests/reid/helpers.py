"""Helpers of the STL tests."""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from ..tiny_configs import narrow_backbone_cfg


def tiny_reid_cfg(depth: int = 50, output_dir: str = ""):
    """A narrow ResNet-IBN-a Re-ID config on 32x16 crops, P=4, K=2, that trains in seconds."""
    cfg = narrow_backbone_cfg(depth)
    cfg.REID.INPUT.SIZE = (32, 16)
    cfg.REID.INPUT.PADDING = 2
    cfg.REID.SAMPLER.P = 4
    cfg.REID.SAMPLER.K = 2
    cfg.REID.TEST_IMS_PER_BATCH = 32
    cfg.REID.LOG_PERIOD = 5
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 7
    cfg.OUTPUT_DIR = output_dir
    return cfg


def make_crops(
    num_ids: int,
    per_id: int,
    size=(32, 16),
    seed: int = 0,
    cams: int = 2,
    noise: float = 30.0,
    shift: float = 60.0,
    first_id: int = 0,
) -> Tuple[List[Dict], List[Dict]]:
    """In-memory person crops: identity ``i`` is a fixed random 4x2 colour pattern (from ``seed``
    and ``i``), upsampled, plus a random per-crop colour shift (a nuisance that a random network
    mostly encodes) and pixel noise. Returns ``(items, records)`` in the crop set's formats
    (``{"image": uint8 CHW}``; identity, person_id, camera_id, file_name)."""
    g = torch.Generator().manual_seed(seed)
    items, records = [], []
    for pid in range(first_id, first_id + num_ids):
        proto = torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(1000 + pid)) * 200 + 28
        base = torch.nn.functional.interpolate(proto[None], size=size, mode="nearest")[0]
        for j in range(per_id):
            offset = shift * (2 * torch.rand(3, 1, 1, generator=g) - 1)
            img = base + offset + noise * torch.randn(base.shape, generator=g)
            items.append({"image": img.clamp(0, 255).to(torch.uint8)})
            records.append(
                {
                    "identity": pid,
                    "person_id": pid - first_id,
                    "camera_id": j % cams,
                    "file_name": f"id{pid}_{j}_s{seed}.jpg",
                    "bbox": [0, 0, size[1], size[0]],
                }
            )
    return items, records


def crop_sets(train_ids: int = 24, per_id: int = 6, test_ids: int = 20):
    """``(train_set, test_set)`` in the formats of ``run_pretraining``: training identities and
    (disjoint) test identities, queries from camera 0 and gallery crops from camera 1."""
    items, recs = make_crops(train_ids, per_id, seed=0)
    q_items, q_recs = make_crops(test_ids, 2, seed=1, first_id=100)
    g_items, g_recs = make_crops(test_ids, 3, seed=2, first_id=100)
    for r in q_recs:
        r["camera_id"] = 0
    for r in g_recs:
        r["camera_id"] = 1
    train = (items, [r["person_id"] for r in recs], train_ids)
    return train, {"query": (q_items, q_recs), "gallery": (g_items, g_recs)}


def resume_case_cfg(output_dir: str):
    """A 16-iteration run (4 epochs of 4 iterations) with a checkpoint every epoch."""
    cfg = tiny_reid_cfg(depth=18, output_dir=output_dir)
    s = cfg.REID.SOLVER
    s.ITERS_PER_EPOCH, s.MAX_EPOCHS, s.WARMUP_EPOCHS, s.STEPS_EPOCHS = 4, 4, 1, (3,)
    s.CHECKPOINT_PERIOD_EPOCHS = 1
    s.BASE_LR = 1e-2
    cfg.STL.EXPORT_NAME = ""
    return cfg
