"""PersonSearchRCNN on tiny inputs: losses, overfitting, inference, query mode, checkpoints."""

from __future__ import annotations

import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from stl_search.modeling import PersonSearchRCNN, PersonSearchROIHeads
from stl_search.modeling.mrfp import SingleLevelRoIPooler
from stl_search.utils.checkpoint import AtomicCheckpointer

from .helpers import synthetic_input

LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_id"}
PREFIXES = {
    "backbone.stem", "backbone.res2", "backbone.res3",
    "proposal_generator.rpn_head",
    "roi_heads.box_head", "roi_heads.box_predictor",
    "roi_heads.id_pooler.neck",
    "roi_heads.id_head.res4", "roi_heads.id_head.res5", "roi_heads.id_head.bnneck",
    "roi_heads.id_loss.classifier",
}  # fmt: skip


def _test_input(d, **extra):
    out = {k: v for k, v in d.items() if k != "instances"}
    out.update(extra)
    return out


def test_state_dict_prefixes_match_interfaces(cfg):
    """Every key sits under one of docs/interfaces.md's prefixes, and every prefix has keys."""
    model = build_model(cfg)
    assert isinstance(model, PersonSearchRCNN) and isinstance(model.roi_heads, PersonSearchROIHeads)
    keys = list(model.state_dict())
    assert all(any(k.startswith(p + ".") for p in PREFIXES) for k in keys), [
        k for k in keys if not any(k.startswith(p + ".") for p in PREFIXES)
    ]
    assert all(any(k.startswith(p + ".") for k in keys) for p in PREFIXES)
    assert not any("res3" in k for k in keys if k.startswith("roi_heads."))


def test_baseline_has_no_neck(cfg):
    cfg.MODEL.MRFP.ENABLED = False
    model = build_model(cfg)
    assert isinstance(model.roi_heads.id_pooler, SingleLevelRoIPooler)
    assert not any(k.startswith("roi_heads.id_pooler") for k in model.state_dict())


def test_training_losses_mrfp_and_baseline(cfg):
    for mrfp in (True, False):
        cfg.MODEL.MRFP.ENABLED = mrfp
        model = build_model(cfg).train()
        with EventStorage(0):
            losses = model([synthetic_input(seed=0), synthetic_input(seed=1)])
        assert set(losses) == LOSSES
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert model.roi_heads.id_head.res5[0].conv1.weight.grad is not None
        assert model.backbone.res2[0].conv1.weight.grad is not None  # ID loss reaches the base nets
        if mrfp:
            assert model.roi_heads.id_pooler.neck[0].conv1.weight.grad is not None


def test_id_branch_boxes_gt_and_proposals(cfg):
    d = synthetic_input(n_persons=3)
    model = build_model(cfg).train()
    heads = model.roi_heads
    targets = [d["instances"]]
    boxes, ids = heads._id_training_boxes([], targets)
    assert torch.equal(boxes[0].tensor, d["instances"].gt_boxes.tensor) and ids.tolist() == [
        0,
        1,
        -1,
    ]
    heads.id_train_boxes = "proposals"
    far = Instances((96, 64))
    far.proposal_boxes = Boxes(
        torch.tensor([[40.0, 80.0, 44.0, 84.0]] * 20)
    )  # background proposals
    far.objectness_logits = torch.zeros(20)
    with EventStorage(0):
        sampled = heads.label_and_sample_proposals([far], targets)
    boxes, ids = heads._id_training_boxes(sampled, targets)
    # Only the appended ground-truth boxes are foreground; backgrounds are dropped, not given ids.
    assert len(boxes[0]) == 3 and sorted(ids.tolist()) == [-1, 0, 1]
    with EventStorage(0):
        losses = model([d])
    assert set(losses) == LOSSES


def test_no_person_in_batch_gives_zero_id_loss(cfg):
    model = build_model(cfg).train()
    d = synthetic_input(n_persons=0)
    with EventStorage(0):
        losses = model([d])
    assert losses["loss_id"].item() == 0.0 and losses["loss_id"].requires_grad


def test_overfits_one_image(cfg):
    """A few dozen SGD steps on one image drive the losses down (fails if gradients are cut)."""
    model = build_model(cfg).train()
    d = synthetic_input()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    history = []
    with EventStorage(0) as storage:
        for _ in range(40):
            losses = model([d])
            total = sum(losses.values())
            opt.zero_grad()
            total.backward()
            opt.step()
            storage.step()
            history.append({k: v.item() for k, v in losses.items()} | {"total": total.item()})
    first = sum(h["total"] for h in history[:3]) / 3
    last = sum(h["total"] for h in history[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert history[-1]["loss_id"] < 0.1 * history[0]["loss_id"]
    assert history[-1]["loss_rpn_cls"] < 0.5 * history[0]["loss_rpn_cls"]


def test_inference_fields_and_unit_norm_embeddings(cfg):
    model = build_model(cfg).eval()
    d = synthetic_input()
    with torch.no_grad():
        out = model([_test_input(d, height=192, width=128)])  # original frame twice the input
    inst = out[0]["instances"]
    assert {"pred_boxes", "scores", "pred_classes", "pred_embeddings"} <= set(inst.get_fields())
    assert inst.image_size == (192, 128) and len(inst) > 0
    assert inst.pred_embeddings.shape == (len(inst), 256)
    assert torch.allclose(inst.pred_embeddings.norm(dim=1), torch.ones(len(inst)), atol=1e-5)
    assert (inst.scores >= cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST).all()
    assert len(inst) <= cfg.TEST.DETECTIONS_PER_IMAGE


def test_inference_without_detections(cfg):
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 1.01
    model = build_model(cfg).eval()
    with torch.no_grad():
        inst = model([_test_input(synthetic_input())])[0]["instances"]
    assert len(inst) == 0 and inst.pred_embeddings.shape == (0, 256)


def test_query_mode_matches_identification_path_of_full_forward(cfg):
    model = build_model(cfg).eval()
    d = synthetic_input()
    gt = d["instances"].gt_boxes
    with torch.no_grad():
        full = model([_test_input(d), _test_input(synthetic_input(seed=3))])[0]["instances"]
        det = full.pred_boxes[:2]
        # Query mode on detected boxes == the embeddings computed inside the full forward.
        queries = model(
            [_test_input(d, query_boxes=Boxes(det.tensor[i : i + 1])) for i in range(2)]
        )
        # Query mode on ground-truth boxes == the given-boxes path of the ROI heads.
        given = Instances(
            (96, 64), pred_boxes=gt, pred_classes=torch.zeros(len(gt), dtype=torch.int64)
        )
        ref = model.inference([_test_input(d)], detected_instances=[given])[0]["instances"]
        q_gt = model(
            [_test_input(d, query_boxes=Boxes(gt.tensor[i : i + 1])) for i in range(len(gt))]
        )
    for i in range(2):
        assert queries[i]["query_embedding"].shape == (256,)
        assert torch.allclose(queries[i]["query_embedding"], full.pred_embeddings[i], atol=1e-5)
    for i in range(len(gt)):
        assert torch.allclose(q_gt[i]["query_embedding"], ref.pred_embeddings[i], atol=1e-5)
        assert abs(q_gt[i]["query_embedding"].norm().item() - 1) < 1e-5


def test_mixed_query_and_gallery_batch(cfg):
    model = build_model(cfg).eval()
    d = synthetic_input()
    q = _test_input(d, query_boxes=Boxes(d["instances"].gt_boxes.tensor[:1]))
    with torch.no_grad():
        out = model([_test_input(d), q])
    assert "instances" in out[0] and out[1]["query_embedding"].shape == (256,)


def test_checkpoint_round_trip(cfg, tmp_path):
    cfg.MODEL.PERSON_SEARCH.ID_LOSS = "OIM"
    model = build_model(cfg).train()
    with EventStorage(0):
        sum(model([synthetic_input()]).values()).backward()  # fills OIM tables and BN statistics
    model.eval()
    AtomicCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert set(saved) == set(model.state_dict())
    assert any(k.startswith("roi_heads.id_loss.lut") for k in saved)

    torch.manual_seed(123)
    fresh = build_model(cfg).eval()
    AtomicCheckpointer(fresh).load(str(tmp_path / "model_final.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    x = _test_input(synthetic_input(), query_boxes=Boxes(torch.tensor([[2.0, 4.0, 14.0, 52.0]])))
    with torch.no_grad():
        assert torch.allclose(model([x])[0]["query_embedding"], fresh([x])[0]["query_embedding"])
