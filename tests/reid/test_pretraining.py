"""STL step 1 end to end at toy scale: training lowers the loss and lifts Re-ID rank-1, the export
is written, and ``resume`` after a SIGKILL continues to the same weights as an uninterrupted run."""

import json
import os
import subprocess
import sys
import textwrap

import torch
from detectron2.utils.logger import setup_logger

from stl_search.engine.setup import load_config
from stl_search.reid.stl_init import load_model_state_dict
from stl_search.reid.trainer import build_reid_model, evaluate_reid, run_pretraining

from ..tiny_configs import SHORT_PRETRAINING_OPTS
from .helpers import crop_sets, resume_case_cfg, tiny_reid_cfg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _losses(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["total_loss"] for r in rows if "total_loss" in r]


def test_pretraining_lowers_the_loss_lifts_rank1_and_exports(tmp_path):
    setup_logger()
    cfg = tiny_reid_cfg(depth=18, output_dir=str(tmp_path))
    s = cfg.REID.SOLVER
    s.MAX_EPOCHS, s.WARMUP_EPOCHS, s.STEPS_EPOCHS, s.BASE_LR = 10, 1, (7,), 1e-2
    train, test = crop_sets()
    before = evaluate_reid(cfg, build_reid_model(cfg, train[2]), test)["reid"]

    after = run_pretraining(cfg, train_set=train, test_set=test)["reid"]

    losses = _losses(str(tmp_path))
    assert len(losses) >= 4 and sum(losses[-2:]) < 0.85 * sum(losses[:2]), losses
    chance = 100.0 / 20
    assert after["rank1"] > max(before["rank1"] + 10, 3 * chance), (before, after)
    assert after["mAP"] > before["mAP"]
    with open(tmp_path / "reid_metrics.json") as f:
        trained = f.read()
    assert json.loads(trained)["reid"]["rank1"] == after["rank1"]
    # An evaluation of the trained weights writes into eval/, the training run's results stay.
    cfg.MODEL.WEIGHTS = str(tmp_path / "model_final.pth")
    evaluated = run_pretraining(cfg, eval_only=True, train_set=train, test_set=test)["reid"]
    with open(tmp_path / "eval" / "reid_metrics.json") as f:
        assert json.load(f)["reid"] == evaluated
    assert (tmp_path / "reid_metrics.json").read_text() == trained
    exported = load_model_state_dict(str(tmp_path / "stl_init.pth"))
    assert "roi_heads.id_pooler.neck.0.conv1.weight" in exported
    assert "roi_heads.id_head.bnneck.weight" in exported and not any(
        "classifier" in k for k in exported
    )


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path[:0] = [{root!r}]
    torch.set_num_threads(1)
    from tests.reid.helpers import crop_sets, resume_case_cfg
    from stl_search.reid import trainer as T
    step = T.ReIDTrainer.run_step
    def run_step(self):
        if self.iter == 10:  # after the checkpoint of iteration 7, before the one of 11
            os.kill(os.getpid(), signal.SIGKILL)
        step(self)
    T.ReIDTrainer.run_step = run_step
    train, test = crop_sets(train_ids=8, per_id=4, test_ids=4)
    torch.manual_seed(0)  # model initialisation, as default_setup's seed_all_rng(SEED)
    T.run_pretraining(resume_case_cfg({out!r}), train_set=train, test_set=test)
""")


def test_resume_after_sigkill_matches_the_uninterrupted_run(tmp_path):
    train, test = crop_sets(train_ids=8, per_id=4, test_ids=4)
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN.format(root=REPO_ROOT, out=str(killed))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    with open(killed / "last_checkpoint") as f:
        assert f.read().strip() == "model_0000007.pth"
    assert not (killed / "model_final.pth").exists()

    torch.manual_seed(123)  # a resumed run must not depend on the fresh process's RNG
    run_pretraining(resume_case_cfg(str(killed)), resume=True, train_set=train, test_set=test)
    torch.manual_seed(0)  # same initialisation as the killed run
    straight = tmp_path / "straight"
    run_pretraining(resume_case_cfg(str(straight)), train_set=train, test_set=test)

    a = load_model_state_dict(str(killed / "model_final.pth"))
    b = load_model_state_dict(str(straight / "model_final.pth"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # the resumed run wrote the checkpoints after the kill
    assert (killed / "model_0000011.pth").exists()
    assert (killed / "last_checkpoint").read_text().strip() == "model_final.pth"


def test_synthetic_config_trains_on_the_real_crop_set(tmp_path, repo_root, monkeypatch):
    """configs/STL/synthetic.yaml end to end on the crops of ``synthetic_train`` (a short epoch)."""
    setup_logger()
    monkeypatch.chdir(repo_root)  # the default data root is ./datasets
    cfg = load_config(
        os.path.join(repo_root, "configs", "STL", "synthetic.yaml"),
        [
            "MODEL.DEVICE",
            "cpu",
            "OUTPUT_DIR",
            str(tmp_path),
            *SHORT_PRETRAINING_OPTS,
            "REID.INPUT.CACHE_CROPS",
            "False",
            "REID.SAMPLER.P",
            "8",
        ],
    )
    results = run_pretraining(cfg)["reid"]
    assert results["num_queries"] > 0 and 0 <= results["mAP"] <= 100
    assert (tmp_path / "model_final.pth").exists() and (tmp_path / "stl_init.pth").exists()
