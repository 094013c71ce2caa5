"""One run per OUTPUT_DIR: a second run is refused with the holder named, a fresh start over an
earlier run's checkpoints needs --resume or --overwrite."""

import os
import subprocess
import sys
import textwrap

import pytest

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
    (tmp_path / "metrics.json").write_text("{}")
    try:
        with pytest.raises(ExistingRunError, match="--resume .*--overwrite"):
            claim_output_dir(str(tmp_path))
        claim_output_dir(str(tmp_path), resume=True)
        claim_output_dir(str(tmp_path), eval_only=True)
        assert (tmp_path / "model_0000009.pth").exists()
        claim_output_dir(str(tmp_path), overwrite=True)
        assert not (tmp_path / "model_0000009.pth").exists()
        assert not (tmp_path / "last_checkpoint").exists()
        assert (tmp_path / "metrics.json").exists()
    finally:
        release_output_dir(str(tmp_path))
