"""train_net.py as a user runs it: trains and writes a checkpoint and metrics, --resume continues
from the last checkpoint, --eval-only evaluates a checkpoint."""

import json
import os
import subprocess
import sys

import pytest

from stl_search.data.datasets.synthetic import PRESETS, ensure_generated


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("d2data"))
    ensure_generated(
        os.path.join(root, "synthetic_prw"), PRESETS["tiny"]
    )  # the built-in name's root
    return root


def _train_net(repo_root, data_root, *argv):
    env = dict(os.environ, DETECTRON2_DATASETS=data_root)
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(repo_root, "train_net.py"),
            "--config-file",
            os.path.join(repo_root, "configs", "synthetic", "person_search.yaml"),
            *argv,
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.STEPS",
            "()",
            "SOLVER.WARMUP_ITERS",
            "0",
            "INPUT.MIN_SIZE_TRAIN",
            "(96,)",
            "INPUT.MAX_SIZE_TRAIN",
            "160",
            "INPUT.MIN_SIZE_TEST",
            "96",
            "INPUT.MAX_SIZE_TEST",
            "160",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=repo_root,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_train_resume_eval_only(repo_root, data_root, tmp_path):
    out = str(tmp_path / "run")
    _train_net(
        repo_root,
        data_root,
        "OUTPUT_DIR",
        out,
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
    )
    assert open(os.path.join(out, "last_checkpoint")).read() == "model_final.pth"
    with open(os.path.join(out, "eval_metrics.json")) as f:
        metrics = json.load(f)["metrics"]
    assert {"search", "detection"} <= set(metrics) and "mAP" in metrics["search"]

    log = _train_net(
        repo_root,
        data_root,
        "--resume",
        "OUTPUT_DIR",
        out,
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
    )
    assert "Resumed at iteration 2" in log
    assert os.path.isfile(os.path.join(out, "model_0000002.pth"))

    eval_dir = str(tmp_path / "eval")
    log = _train_net(
        repo_root,
        data_root,
        "--eval-only",
        "OUTPUT_DIR",
        eval_dir,
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
    )
    assert os.path.isfile(os.path.join(eval_dir, "eval_metrics.json"))
    assert "search/mAP" in log
