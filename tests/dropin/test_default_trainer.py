"""examples/detectron2_default_trainer.py, a plain Detectron2 script (``import stl_search`` and
Detectron2's ``DefaultTrainer`` pattern), trains the person-search model a few iterations and
evaluates it with ``PersonSearchEvaluator`` through Detectron2's own ``DefaultTrainer.test``; a
weights file or a config file that holds code is refused and its code never runs."""

import os
import re
import subprocess
import sys

from ..engine.helpers import evil_files

SMALL = [
    "MODEL.DEVICE",  # a plain Detectron2 config keeps the cuda default: the CPU is stated
    "cpu",
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
]


def _run(repo_root, data_root, *argv, config=None, expect_failure=False) -> str:
    config = config or os.path.join(repo_root, "configs", "synthetic", "person_search.yaml")
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(repo_root, "examples", "detectron2_default_trainer.py"),
            "--config-file",
            config,
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=repo_root,
        env=dict(os.environ, DETECTRON2_DATASETS=data_root),
    )
    assert (proc.returncode != 0) == expect_failure, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _search_metrics(log: str) -> dict:
    """The ``search`` task's numbers from Detectron2's ``print_csv_format`` lines."""
    m = re.search(r"copypaste: Task: search\n.*copypaste: (\S+)\n.*copypaste: (\S+)\n", log)
    assert m, log[-3000:]
    return dict(zip(m.group(1).split(","), map(float, m.group(2).split(","))))


def test_user_default_trainer_trains_and_evaluates(repo_root, data_root, tmp_path):
    out = str(tmp_path / "run")
    log = _run(repo_root, data_root, *SMALL, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out)
    assert "Starting training from iteration 0" in log
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    trained = _search_metrics(log)  # DefaultTrainer's EvalHook after the last iteration
    assert set(trained) == {"mAP", "top1", "top5", "top10"}
    assert all(0.0 <= v <= 100.0 for v in trained.values())
    assert "copypaste: Task: detection" in log

    weights = os.path.join(out, "model_final.pth")
    log = _run(
        repo_root, data_root, "--eval-only", *SMALL, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", out
    )
    assert _search_metrics(log) == trained  # the same weights, the same numbers


def test_user_default_trainer_runs_no_code_from_weights_or_config(repo_root, data_root, tmp_path):
    marker, files = evil_files(tmp_path)
    out = str(tmp_path / "run")
    log = _run(
        repo_root,
        data_root,
        "--eval-only",
        *SMALL,
        "MODEL.WEIGHTS",
        files["pkl"],
        "OUTPUT_DIR",
        out,
        expect_failure=True,
    )
    assert not os.path.exists(marker)
    assert f"{files['pkl']}: refused to load" in log

    tagged = tmp_path / "tagged.yaml"
    tagged.write_text(
        f"_BASE_: {os.path.join(repo_root, 'configs', 'synthetic', 'person_search.yaml')}\n"
        f"SEED: !!python/object/apply:os.system [\"touch '{marker}'\"]\n"
    )
    log = _run(repo_root, data_root, *SMALL, config=str(tagged), expect_failure=True)
    assert not os.path.exists(marker)
    assert "python/object/apply:os.system" in log and str(tagged) in log
