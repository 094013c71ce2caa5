"""train_net.py as a user runs it: trains and writes a checkpoint and metrics, refuses a second
run in its folder and a fresh start over its checkpoints, --resume continues from the last complete
checkpoint (a refused resume leaves config.yaml as it was), --eval-only evaluates a checkpoint into
OUTPUT_DIR/eval/ without touching the training run's config.yaml and evaluation."""

import json
import os
import subprocess
import sys

import pytest

from stl_search.data.datasets.synthetic import PRESETS, ensure_generated
from stl_search.engine.setup import argument_parser
from stl_search.utils.output_dir import lock_output_dir, release_output_dir

from ..tiny_configs import SHORT_TRAIN_OPTS


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("d2data"))
    ensure_generated(
        os.path.join(root, "synthetic_prw"), PRESETS["tiny"]
    )  # the built-in name's root
    return root


def _train_net(
    repo_root,
    data_root,
    *argv,
    script="train_net.py",
    config="synthetic/person_search.yaml",
    expect_failure=False,
):
    env = dict(os.environ, DETECTRON2_DATASETS=data_root)
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(repo_root, script),
            "--config-file",
            os.path.join(repo_root, "configs", config),
            *argv,
            "MODEL.DEVICE",
            "cpu",
            *SHORT_TRAIN_OPTS,
            "SOLVER.STEPS",
            "()",
            "SOLVER.WARMUP_ITERS",
            "0",
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
    if expect_failure:
        assert proc.returncode != 0, proc.stdout[-3000:]
        return proc.stderr
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

    # A fresh start over the run's checkpoints is refused ...
    err = _train_net(repo_root, data_root, "OUTPUT_DIR", out, expect_failure=True)
    assert "holds checkpoints of an earlier run" in err and "--overwrite" in err
    # ... and so is any run while another holds the folder (here: this test process).
    lock_output_dir(out)
    try:
        err = _train_net(repo_root, data_root, "--resume", "OUTPUT_DIR", out, expect_failure=True)
    finally:
        release_output_dir(out)
    assert f"is in use by another run (pid {os.getpid()}" in err

    # --resume with a truncated last checkpoint continues from the newest complete one.
    final = os.path.join(out, "model_final.pth")
    os.truncate(final, os.path.getsize(final) // 2)
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
    assert "newest complete checkpoint" in log and "model_0000001.pth" in log
    assert "Resumed at iteration 2" in log
    assert os.path.isfile(os.path.join(out, "model_0000002.pth"))
    with open(os.path.join(out, "config.yaml"), "rb") as f:
        training_config = f.read()
    assert b"MAX_ITER: 3" in training_config  # written once the resumed checkpoint loaded

    # A resume refused (weights that do not fit) leaves the run's config.yaml as it was.
    err = _train_net(
        repo_root,
        data_root,
        "--resume",
        "OUTPUT_DIR",
        out,
        "MODEL.PERSON_SEARCH.NUM_IDENTITIES",
        "1000",
        "SOLVER.MAX_ITER",
        "4",
        expect_failure=True,
    )
    assert "WeightsMismatchError" in err and "does not fit the model" in err
    with open(os.path.join(out, "config.yaml"), "rb") as f:
        assert f.read() == training_config

    with open(os.path.join(out, "eval_metrics.json"), "rb") as f:
        training_eval = f.read()
    training_inference = sorted(os.listdir(os.path.join(out, "inference")))
    log = _train_net(
        repo_root,
        data_root,
        "--eval-only",
        "OUTPUT_DIR",
        out,
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
        "TEST.DETECTIONS_PER_IMAGE",
        "7",
    )
    assert os.path.isfile(os.path.join(out, "eval", "eval_metrics.json"))
    assert os.listdir(os.path.join(out, "eval", "inference")) == training_inference
    assert "search/mAP" in log
    with open(os.path.join(out, "config.yaml"), "rb") as f:
        assert f.read() == training_config  # the training run's config, untouched
    with open(os.path.join(out, "eval_metrics.json"), "rb") as f:
        assert f.read() == training_eval  # and so is its evaluation
    with open(os.path.join(out, "config_eval.yaml")) as f:
        assert "DETECTIONS_PER_IMAGE: 7" in f.read()


def test_pretrain_reid_refuses_a_fresh_start_over_checkpoints(repo_root, data_root, tmp_path):
    (tmp_path / "model_0000003.pth").write_bytes(b"")
    err = _train_net(
        repo_root,
        data_root,
        "OUTPUT_DIR",
        str(tmp_path),
        script="projects/stl_search/pretrain_reid.py",
        config="STL/synthetic.yaml",
        expect_failure=True,
    )
    assert "holds checkpoints of an earlier run (model_0000003.pth)" in err
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.parametrize("config", [[], ["--config-file", ""]])
def test_the_run_parser_requires_a_config_file(config, capsys):
    """Detectron2's defaults are no person-search model: no run starts from them."""
    with pytest.raises(SystemExit) as exit:
        argument_parser().parse_args([*config, "OUTPUT_DIR", "out"])
    assert exit.value.code == 2
    assert "--config-file" in capsys.readouterr().err.splitlines()[-1]


def test_train_net_without_a_config_file_is_refused(repo_root, tmp_path):
    """train_net.py (and pretrain_reid.py) parse with :func:`argument_parser`."""
    proc = subprocess.run(
        [sys.executable, os.path.join(repo_root, "train_net.py"), "OUTPUT_DIR", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=repo_root,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "required: --config-file" in proc.stderr, proc.stderr[-2000:]
    assert os.listdir(tmp_path) == []
