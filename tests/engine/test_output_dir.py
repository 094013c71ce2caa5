"""One run per OUTPUT_DIR: a second run is refused with the holder named, a fresh start over an
earlier run's checkpoints needs --resume or --overwrite, and --overwrite leaves nothing of the
earlier run's records to mix with the new run's; a resume does not replace config.yaml before
its checkpoint has loaded."""

import argparse
import os
import subprocess
import sys
import textwrap

import pytest

from stl_search.engine.setup import setup
from stl_search.utils.output_dir import (
    ExistingRunError,
    OutputDirInUseError,
    claim_output_dir,
    lock_output_dir,
    release_output_dir,
)


def _hold_lock_in_child(repo_root, output_dir):
    code = textwrap.dedent(
        f"""
        import sys, time
        from stl_search.utils.output_dir import lock_output_dir
        lock_output_dir({str(output_dir)!r})
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    env = dict(os.environ, PYTHONPATH=repo_root)
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_is_refused_naming_the_holder(repo_root, tmp_path):
    child = _hold_lock_in_child(repo_root, tmp_path)
    try:
        with pytest.raises(OutputDirInUseError) as error:
            lock_output_dir(str(tmp_path))
        message = str(error.value)
        assert f"pid {child.pid}" in message and "host " in message and "command " in message
    finally:
        child.kill()
        child.wait()
    lock_output_dir(str(tmp_path))  # released with its holder's process
    release_output_dir(str(tmp_path))


def test_a_fresh_start_over_checkpoints_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "model_0000009.pth").write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    (tmp_path / "metrics.json").write_text('{"iteration": 9}\n')
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"e")
    (tmp_path / "eval_metrics.json").write_text("{}")
    (tmp_path / "inference" / "synthetic_gallery").mkdir(parents=True)
    (tmp_path / "log.txt").write_text("the earlier run's log\n")
    try:
        with pytest.raises(ExistingRunError, match="--resume .*--overwrite"):
            claim_output_dir(str(tmp_path))
        claim_output_dir(str(tmp_path), resume=True)
        claim_output_dir(str(tmp_path), eval_only=True)
        assert (tmp_path / "model_0000009.pth").exists()
        claim_output_dir(str(tmp_path), overwrite=True)
        assert not (tmp_path / "model_0000009.pth").exists()
        assert not (tmp_path / "last_checkpoint").exists()
        assert sorted(os.listdir(tmp_path)) == [".lock", "log.txt"]  # the log is history
    finally:
        release_output_dir(str(tmp_path))


def test_a_resume_leaves_config_yaml_to_the_trainer(tmp_path):
    """setup() of a --resume over an earlier run: config.yaml is still the earlier run's (the
    resume may yet be refused: weights that do not fit); a fresh start writes it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "model_0000001.pth").write_bytes(b"x")
    (out / "last_checkpoint").write_text("model_0000001.pth")
    (out / "config.yaml").write_text("the earlier run's config\n")
    opts = ["OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "7"]
    try:
        setup(argparse.Namespace(config_file="", opts=opts, resume=True, eval_only=False))
        assert (out / "config.yaml").read_text() == "the earlier run's config\n"
    finally:
        release_output_dir(str(out))
    fresh = tmp_path / "fresh"
    opts[1] = str(fresh)
    try:
        setup(argparse.Namespace(config_file="", opts=opts, resume=True, eval_only=False))
        assert "MAX_ITER: 7" in (fresh / "config.yaml").read_text()
    finally:
        release_output_dir(str(fresh))
