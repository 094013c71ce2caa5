"""Losses of Eq. 1: batch-hard triplet against a brute-force reference, centre loss, its update."""

import pytest
import torch

from stl_search.reid.losses import CenterLoss, batch_hard_triplet_loss, id_loss


def _reference_triplet(x, labels, margin, soft):
    n = len(labels)
    losses = []
    for a in range(n):
        pos = [torch.dist(x[a], x[p]).item() for p in range(n) if labels[p] == labels[a]]
        neg = [torch.dist(x[a], x[q]).item() for q in range(n) if labels[q] != labels[a]]
        if not neg:
            continue
        diff = max(pos) - min(neg)
        losses.append(
            torch.nn.functional.softplus(torch.tensor(diff)).item()
            if soft
            else max(0.0, diff + margin)
        )
    return sum(losses) / len(losses)


@pytest.mark.parametrize("soft,margin", [(False, 0.3), (False, 1.0), (True, 0.0)])
def test_batch_hard_triplet_equals_brute_force(soft, margin):
    g = torch.Generator().manual_seed(0)
    for trial in range(3):
        labels = torch.arange(6).repeat_interleave(4)[torch.randperm(24, generator=g)]
        x = torch.randn(24, 16, generator=g) * (0.2 + trial)
        got = batch_hard_triplet_loss(x, labels, margin=margin, soft_margin=soft)
        assert got.item() == pytest.approx(
            _reference_triplet(x, labels.tolist(), margin, soft), abs=1e-5
        )


def test_batch_hard_triplet_has_gradient_and_handles_a_single_identity():
    x = torch.randn(8, 4, requires_grad=True)
    batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert batch_hard_triplet_loss(x, torch.zeros(8, dtype=torch.long)).item() == 0.0


def test_center_loss_value_and_center_update_with_its_own_sgd():
    torch.manual_seed(0)
    weight, lr = 5e-4, 0.5
    loss_fn = CenterLoss(num_classes=3, feature_dim=4)
    feats = torch.randn(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    centers = loss_fn.centers.detach().clone()

    value = loss_fn(feats, labels)
    expected = sum(((feats[i] - centers[labels[i]]) ** 2).sum() for i in range(6)) / 6
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)

    opt = torch.optim.SGD(loss_fn.parameters(), lr=lr)
    opt.zero_grad()
    (weight * loss_fn(feats, labels)).backward()
    loss_fn.rescale_grad(weight)  # BoT: the centre update ignores lambda
    opt.step()
    for j in range(3):
        members = feats[labels == j]
        # d/dc_j of mean_i ||x_i - c_yi||^2 = -2/B * sum_{y_i=j} (x_i - c_j)
        step = lr * 2.0 / 6 * (members - centers[j]).sum(dim=0)
        torch.testing.assert_close(
            loss_fn.centers[j].detach(), centers[j] + step, rtol=1e-5, atol=1e-6
        )


def test_id_loss_label_smoothing_matches_bot_formula():
    logits, labels, eps = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2]), 0.1
    target = torch.full((5, 7), eps / 7).scatter_(1, labels[:, None], 1 - eps + eps / 7)
    expected = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert id_loss(logits, labels, eps).item() == pytest.approx(expected.item(), rel=1e-6)
    assert id_loss(logits, labels, 0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item()
    )
