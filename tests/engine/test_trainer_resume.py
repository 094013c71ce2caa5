"""PersonSearchTrainer: a run killed mid-way and resumed with --resume ends with exactly the weights
of an uninterrupted run (same seed), and its checkpoints hold the optimizer state."""

import os

import pytest
import torch
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from stl_search.data.datasets.builtin import register_synthetic
from stl_search.data.datasets.synthetic import PRESETS
from stl_search.engine.setup import load_config
from stl_search.engine.trainer import PersonSearchTrainer

from ..tiny_configs import SHORT_TRAIN_OPTS, train_only_datasets


class _Killed(RuntimeError):
    pass


class _KillAfter(HookBase):
    """Raises after iteration ``n`` (registered after the checkpointer: its save has happened)."""

    def __init__(self, n: int):
        self._n = n

    def after_step(self):
        if self.trainer.iter == self._n:
            raise _Killed(f"killed after iteration {self._n}")


@pytest.fixture(scope="module")
def tiny_names(tmp_path_factory):
    root = os.path.join(str(tmp_path_factory.mktemp("resume")), "synthetic_prw")
    register_synthetic("resume_syn", root, PRESETS["tiny"])
    return "resume_syn"


def _cfg(repo_root, prefix, out_dir, seed=7):
    return load_config(
        os.path.join(repo_root, "configs", "synthetic", "person_search.yaml"),
        [
            "MODEL.DEVICE",
            "cpu",
            *train_only_datasets(prefix),
            *SHORT_TRAIN_OPTS,
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "SOLVER.STEPS",
            "(3,)",
            "SOLVER.WARMUP_ITERS",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "SEED",
            str(seed),
            "OUTPUT_DIR",
            str(out_dir),
        ],
    )


def _train(cfg, resume=False, kill_after=None):
    seed_all_rng(cfg.SEED)  # as default_setup does: the initial weights depend on the seed
    trainer = PersonSearchTrainer(cfg)
    if kill_after is not None:
        trainer.register_hooks([_KillAfter(kill_after)])
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _max_diff(a, b):
    return max(
        (a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()
    )


def test_killed_and_resumed_run_matches_uninterrupted(repo_root, tiny_names, tmp_path):
    straight = _train(_cfg(repo_root, tiny_names, tmp_path / "straight"))

    killed_dir = tmp_path / "killed"
    with pytest.raises(_Killed):
        _train(_cfg(repo_root, tiny_names, killed_dir), kill_after=1)
    assert (killed_dir / "last_checkpoint").read_text() == "model_0000001.pth"
    saved = torch.load(killed_dir / "model_0000001.pth", weights_only=True)
    assert saved["iteration"] == 1 and saved["trainer"]["_trainer"]["optimizer"]["state"], (
        "no optimizer state"
    )

    resumed = _train(_cfg(repo_root, tiny_names, killed_dir), resume=True)
    assert _max_diff(straight, resumed) < 1e-6

    # The comparison can fail: another seed (data order and augmentation) gives other weights.
    other = _train(_cfg(repo_root, tiny_names, tmp_path / "other", seed=8))
    assert _max_diff(straight, other) > 1e-4
