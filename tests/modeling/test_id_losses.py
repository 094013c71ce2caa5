"""ID losses: CE ignores unlabeled, class-balanced weights, focal = CE at gamma 0, OIM tables."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stl_search.modeling.losses import (
    OIMLoss,
    SoftmaxIDLoss,
    build_id_loss,
    class_balanced_weights,
    identity_instance_counts,
    resolve_num_identities,
)


def test_ce_ignores_unlabeled_and_classifier_init():
    loss = SoftmaxIDLoss(16, 5)
    assert loss.classifier.bias is None
    assert loss.classifier.weight.std().item() == pytest.approx(0.001, rel=0.3)
    x = torch.randn(4, 16)
    y = torch.tensor([0, -1, 3, -1])
    expected = F.cross_entropy(loss.classifier(x[[0, 2]]), y[[0, 2]])
    assert torch.allclose(loss(x, y), expected)
    zero = loss(x, torch.full((4,), -1))
    assert zero.item() == 0.0 and zero.requires_grad


def test_focal_reduces_to_ce_at_gamma_zero_and_down_weights_easy():
    torch.manual_seed(0)
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, -1, 1])
    ce = SoftmaxIDLoss(8, 4)
    focal0 = SoftmaxIDLoss(8, 4, gamma=0.0)
    focal2 = SoftmaxIDLoss(8, 4, gamma=2.0)
    focal0.load_state_dict(ce.state_dict())
    focal2.load_state_dict(ce.state_dict())
    assert torch.allclose(focal0(x, y), ce(x, y))
    assert focal2(x, y) < ce(x, y)


def test_class_balanced_weights():
    counts = torch.tensor([1.0, 10.0, 100.0])
    beta = 0.99
    w = class_balanced_weights(counts, beta)
    raw = torch.tensor([(1 - beta) / (1 - beta**n) for n in (1, 10, 100)])
    assert torch.allclose(w, raw / raw.sum() * 3, atol=1e-6)
    assert w[0] > w[1] > w[2] and w.sum().item() == pytest.approx(3.0)
    # beta -> 0: every class weighs 1 (plain CE).
    assert torch.allclose(class_balanced_weights(counts, 0.0), torch.ones(3))


def test_cb_ce_from_counts_weights_the_loss(cfg):
    cfg.MODEL.PERSON_SEARCH.ID_LOSS = "CB_CE"
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 3
    cfg.MODEL.PERSON_SEARCH.CB_BETA = 0.9
    dicts = [
        {"annotations": [{"person_id": 0}, {"person_id": 1}, {"person_id": -1}]},
        {"annotations": [{"person_id": 1}, {"person_id": 1}, {"person_id": 2}]},
    ]
    counts = identity_instance_counts(dicts, 3)
    assert counts.tolist() == [1.0, 3.0, 1.0]
    loss = build_id_loss(cfg, 8, identity_counts=counts)
    assert isinstance(loss, SoftmaxIDLoss) and loss.class_weights is not None
    assert "class_weights" not in loss.state_dict()  # recomputed at build, never checkpointed
    x, y = torch.randn(3, 8), torch.tensor([0, 1, -1])
    per = F.cross_entropy(loss.classifier(x[:2]), y[:2], reduction="none")
    assert torch.allclose(loss(x, y), (per * loss.class_weights[y[:2]]).mean())


def test_oim_updates_lut_and_queue():
    oim = OIMLoss(4, 3, queue_size=2, scalar=10.0, momentum=0.5)
    x = torch.tensor(
        [[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1.0]], requires_grad=True
    )
    y = torch.tensor([0, -1, -1, -1])
    loss = oim(x, y)
    loss.backward()
    assert x.grad is not None and torch.isfinite(loss)
    # Initially everything is 0: the loss is log(number of entries).
    assert loss.item() == pytest.approx(math.log(5), rel=1e-5)
    assert torch.allclose(oim.lut[0], torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(oim.lut[1:], torch.zeros(2, 4))
    # Three unlabeled into a queue of 2: the last two stay, the pointer wraps.
    assert torch.allclose(oim.queue, torch.tensor([[0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
    assert int(oim.queue_ptr) == 0
    oim(torch.tensor([[0.0, 1.0, 0, 0]]), torch.tensor([0]))
    assert torch.allclose(oim.lut[0], F.normalize(torch.tensor([0.5, 0.5, 0, 0]), dim=0))
    assert set(oim.state_dict()) == {"lut", "queue", "queue_ptr"}
    oim.eval()
    before = oim.lut.clone()
    oim(torch.randn(2, 4), torch.tensor([1, 2]))
    assert torch.equal(oim.lut, before)  # no updates at eval


def test_build_losses_and_num_identities(cfg):
    for kind, cls in (("CE", SoftmaxIDLoss), ("FOCAL", SoftmaxIDLoss), ("OIM", OIMLoss)):
        cfg.MODEL.PERSON_SEARCH.ID_LOSS = kind
        assert isinstance(build_id_loss(cfg, 8), cls)
    assert build_id_loss(cfg, 8).lut.shape == (5, 8)
    cfg.MODEL.PERSON_SEARCH.ID_LOSS = "nope"
    with pytest.raises(ValueError):
        build_id_loss(cfg, 8)
    assert resolve_num_identities(cfg) == 5
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 0
    cfg.DATASETS.TRAIN = ()
    with pytest.raises(ValueError):
        resolve_num_identities(cfg)
