"""Paper 4.3 schedule: 3.5e-5 -> 3.5e-4 linearly over 10 epochs, x0.1 at epochs 40 and 70."""

import pytest
import torch

from stl_search.reid.trainer import build_reid_lr_scheduler, iters_per_epoch

from .helpers import tiny_reid_cfg


def test_warmup_and_steps_in_epochs():
    cfg = tiny_reid_cfg()
    assert cfg.REID.SOLVER.BASE_LR == 3.5e-4 and cfg.REID.SOLVER.MAX_EPOCHS == 120
    ipe = iters_per_epoch(cfg, num_crops=83)  # 83 // (4 * 2) = 10
    assert ipe == 10
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.REID.SOLVER.BASE_LR)
    sched = build_reid_lr_scheduler(cfg, opt, ipe, 120 * ipe)
    lrs = []
    for _ in range(120 * ipe):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(3.5e-5)
    assert lrs[50] == pytest.approx(3.5e-5 + (3.5e-4 - 3.5e-5) * 0.5)
    assert lrs[100] == pytest.approx(3.5e-4) and lrs[399] == pytest.approx(3.5e-4)
    assert lrs[400] == pytest.approx(3.5e-5) and lrs[699] == pytest.approx(3.5e-5)
    assert lrs[700] == pytest.approx(3.5e-6) and lrs[-1] == pytest.approx(3.5e-6)
