"""BatchNorm under data-parallel training: the per-process image warning and the synchronised-BN
conversion (every trainable BN incl. the embedding BN, state dict unchanged)."""

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from torch import nn

from stl_search.engine.batch_norm import (
    batch_norm_warning,
    convert_sync_batchnorm,
    maybe_sync_batchnorm,
)
from stl_search.modeling.backbone.resnet_ibn import IBN

from ..tiny_configs import tiny_person_search_cfg


def test_warning_below_the_minimum_images_per_process():
    cfg = tiny_person_search_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 16
    message = batch_norm_warning(cfg, 8)
    assert "2 images per process" in message and "MODEL.BATCH_NORM.SYNC True" in message
    assert batch_norm_warning(cfg, 4) is None  # 4 per process: the default minimum
    cfg.MODEL.BATCH_NORM.MIN_IMAGES_PER_PROCESS = 8
    assert "4 images per process" in batch_norm_warning(cfg, 4)
    assert batch_norm_warning(cfg, 2) is None
    cfg.MODEL.BATCH_NORM.SYNC = True
    assert batch_norm_warning(cfg, 8) is None
    cfg.MODEL.BATCH_NORM.SYNC = False
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    assert batch_norm_warning(cfg, 8) is None


def test_sync_conversion_keeps_the_state_dict_and_the_outputs(one_seeded_thread):
    cfg = tiny_person_search_cfg(freeze_at=2)  # stem and res2 frozen: FrozenBN stays
    model = build_model(cfg).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = {"image": torch.randint(0, 255, (3, 96, 64), dtype=torch.uint8), "height": 96}
    image["width"] = 64
    with torch.no_grad():
        expected = model([image])[0]["instances"]
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    synced = convert_sync_batchnorm(model)
    sync_layers = [m for m in synced.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(sync_layers) == n_bn > 0
    assert isinstance(synced.roi_heads.id_head.bnneck, nn.SyncBatchNorm)  # the embedding BN
    assert not synced.roi_heads.id_head.bnneck.bias.requires_grad  # BNNeck's frozen bias
    ibn = synced.backbone.res3[0].conv1.norm
    assert isinstance(ibn, IBN) and isinstance(ibn.BN, nn.SyncBatchNorm)
    assert isinstance(ibn.IN, nn.InstanceNorm2d)
    assert isinstance(synced.backbone.res2[0].conv1.norm.BN, FrozenBatchNorm2d)
    after = synced.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        got = synced.eval()([image])[0]["instances"]
    assert torch.equal(got.pred_boxes.tensor, expected.pred_boxes.tensor)
    assert torch.allclose(got.pred_embeddings, expected.pred_embeddings)


def test_switch_applies_with_several_processes_only():
    cfg = tiny_person_search_cfg()
    cfg.MODEL.BATCH_NORM.SYNC = True
    model = build_model(cfg)
    assert maybe_sync_batchnorm(cfg, model, 1) is model  # one process: BN as built
    with pytest.raises(ValueError, match="CUDA tensors only"):
        maybe_sync_batchnorm(cfg, model, 2)  # CPU processes
    cfg.MODEL.DEVICE = "cuda"
    synced = maybe_sync_batchnorm(cfg, model, 8)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
