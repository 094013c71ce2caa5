"""The ID losses as training uses them: class-balanced weights from a registered training set
(identity counts resolved in engine/), and the OIM look-up table and queue identical on every
process after a two-process DDP training step (features gathered from all processes)."""

import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils import comm
from detectron2.utils.events import EventStorage
from torch.nn.parallel import DistributedDataParallel

from stl_search.compat import launch
from stl_search.engine.model import resolve_training_metadata
from stl_search.utils.io import atomic_torch_save, safe_torch_load

from ..modeling.helpers import synthetic_input
from ..tiny_configs import tiny_person_search_cfg


def test_class_balanced_weights_from_a_registered_training_set():
    name = "cb_counts_train"
    if name not in DatasetCatalog.list():
        # Identity 0: 1 box, identity 1: 3 boxes, identity 2: 1 box; unlabeled boxes count for none.
        dicts = [
            {"annotations": [{"person_id": 0}, {"person_id": 1}, {"person_id": -1}]},
            {"annotations": [{"person_id": 1}, {"person_id": 1}, {"person_id": 2}]},
        ]
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(num_identities=3)
    cfg = tiny_person_search_cfg()
    cfg.DATASETS.TRAIN = (name,)
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 0
    cfg.MODEL.PERSON_SEARCH.ID_LOSS = "CB_CE"
    cfg.MODEL.PERSON_SEARCH.CB_BETA = 0.9
    model = build_model(resolve_training_metadata(cfg))
    beta, counts = 0.9, (1, 3, 1)
    raw = [(1 - beta) / (1 - beta**n) for n in counts]  # Cui et al., effective number of samples
    expected = [3 * w / sum(raw) for w in raw]  # scaled to sum to the number of identities
    got = model.roi_heads.id_loss.class_weights.tolist()
    assert got == pytest.approx(expected, rel=1e-6)
    assert got[0] == pytest.approx(1.26636, rel=1e-4) and got[1] == pytest.approx(0.46729, rel=1e-4)


def _oim_worker(out_dir: str) -> None:
    rank = comm.get_rank()
    torch.manual_seed(0)  # the same initial model on both processes
    cfg = tiny_person_search_cfg()
    cfg.MODEL.PERSON_SEARCH.ID_LOSS = "OIM"
    model = build_model(cfg).train()
    ddp = DistributedDataParallel(model, broadcast_buffers=False)  # as Detectron2's trainer
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
    # Each process sees other images (persons 0 and 1 labeled, one unlabeled per image).
    batch = [synthetic_input(96, 64, seed=10 * rank + i) for i in range(2)]
    with EventStorage(0):
        losses = ddp(batch)
    sum(losses.values()).backward()
    optimizer.step()
    oim = model.roi_heads.id_loss
    atomic_torch_save(
        {k: v.clone() for k, v in oim.state_dict().items()},
        os.path.join(out_dir, f"oim_rank{rank}.pth"),
    )


def test_oim_tables_identical_on_all_ranks_after_a_ddp_step(tmp_path):
    launch(_oim_worker, 2, dist_url="auto", args=(str(tmp_path),), device="cpu")
    ranks = [safe_torch_load(str(tmp_path / f"oim_rank{r}.pth")) for r in (0, 1)]
    assert set(ranks[0]) == {"lut", "queue", "queue_ptr"}
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    # Both processes' features went in: 2 x 2 images x 1 unlabeled person = 4 queue entries, and
    # the rows of identities 0 and 1 moved off zero.
    assert int(ranks[0]["queue_ptr"]) == 4
    assert (ranks[0]["queue"].norm(dim=1) > 0).sum() == 4
    assert (ranks[0]["lut"][:2].norm(dim=1) > 0.99).all() and ranks[0]["lut"][2:].abs().sum() == 0
