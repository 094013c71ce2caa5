"""stl_search.utils.io atomic writes: usual permissions, the directory fsync'ed after the rename,
and the temp files of a killed writer removed at the next start (only those)."""

import argparse
import errno
import json
import os
import signal
import stat

import pytest
import torch

from stl_search.engine.setup import setup
from stl_search.utils import io
from stl_search.utils.io import (
    atomic_open,
    atomic_torch_save,
    atomic_write_json,
    remove_stale_temp_files,
)


@pytest.fixture
def restore_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_get_the_permissions_of_a_plain_open(tmp_path, restore_umask, mask, expected):
    os.umask(mask)
    atomic_write_json({"a": 1}, str(tmp_path / "m.json"))
    atomic_torch_save({"w": torch.ones(1)}, str(tmp_path / "m.pth"))
    with atomic_open(str(tmp_path / "plot.png"), "wb") as f:
        f.write(b"png")
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("reference")
    assert _mode(tmp_path / "plain.txt") == expected
    for name in ("m.json", "m.pth", "plot.png"):
        assert _mode(tmp_path / name) == expected, name


def test_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    directory = os.stat(tmp_path)

    def fsync(fd):
        st = os.fstat(fd)
        is_dir = (st.st_dev, st.st_ino) == (directory.st_dev, directory.st_ino)
        events.append("fsync directory" if is_dir else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append(f"rename to {os.path.basename(dst)}")
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "fsync", fsync)
    monkeypatch.setattr(io.os, "replace", replace)
    atomic_write_json({"a": 1}, str(tmp_path / "m.json"))
    assert events == ["fsync file", "rename to m.json", "fsync directory"]


def _kill_a_writer_of(path):
    """A forked process killed (SIGKILL) in the middle of an atomic write of ``path``."""
    pid = os.fork()
    if pid == 0:  # the child: no cleanup can run
        with atomic_open(str(path), "wb") as f:
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return pid


def needs_fork(test):
    """Kills a forked writer (POSIX). The child only writes a file and kills itself, so Python
    3.12's warning about forking a multi-threaded process does not apply."""
    test = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")(test)
    return pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")(test)


@needs_fork
def test_temp_file_of_a_killed_writer_is_removed_and_nothing_else(tmp_path):
    nested = tmp_path / "inference" / "prw_gallery"
    nested.mkdir(parents=True)
    dead = _kill_a_writer_of(tmp_path / "model_0000009.pth")
    _kill_a_writer_of(nested / "person_search_prw.json")
    (left,) = [p for p in tmp_path.iterdir() if p.is_file()]
    (nested_left,) = list(nested.iterdir())
    host = io.host_tag()
    assert left.name.startswith(f".model_0000009.pth.{host}.{dead}.")
    assert left.name.endswith(io.TEMP_SUFFIX)
    assert not (tmp_path / "model_0000009.pth").exists()  # the target was never replaced

    keep = [
        "model_0000004.pth",
        "notes.tmp",
        ".model_0000004.pth.tmp",
        f".x.{host}.{dead}.abcdef12.tmp",  # another program's temp pattern
        f"x.{host}.{dead}.abcdef12{io.TEMP_SUFFIX}",  # no leading dot: not ours
        f".x.{host}.{os.getpid()}.abcdef12{io.TEMP_SUFFIX}",  # a live writer (this process)
        f".x.other-host.{dead}.abcdef12{io.TEMP_SUFFIX}",  # a pid of another machine
        f".x.{dead}.abcdef12{io.TEMP_SUFFIX}",  # no host: which machine is unknown
    ]
    for name in keep:
        (tmp_path / name).write_text("keep")

    removed = remove_stale_temp_files(str(tmp_path))
    assert removed == [str(left)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(keep)
    assert list(nested.iterdir()) == [nested_left]  # sub-folders: another run's, perhaps
    assert remove_stale_temp_files(str(tmp_path)) == []


@needs_fork
def test_a_run_start_removes_the_leftovers_of_a_killed_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _kill_a_writer_of(out / "last_checkpoint")
    assert len(list(out.iterdir())) == 1
    args = argparse.Namespace(
        config_file="", opts=["OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu"], eval_only=False
    )
    setup(args)
    assert not [p for p in out.iterdir() if p.name.endswith(io.TEMP_SUFFIX)]
    assert (out / "config.yaml").is_file()


def test_a_write_that_cannot_start_names_the_target_not_the_temp_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for target in (str(tmp_path / "a_file" / "hits.json"), "/proc/stl-search-test.json"):
        with pytest.raises(OSError) as caught:
            atomic_write_json({"a": 1}, target)
        message = str(caught.value)
        assert f"cannot write {target}:" in message, message
        assert io.TEMP_SUFFIX not in message, message
        assert caught.value.errno is not None
    assert isinstance(caught.value, FileNotFoundError)  # the errno's subclass, as before
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_a_full_disk_says_so_keeps_the_old_file_and_removes_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    atomic_write_json({"old": 1}, str(target))

    def full(fd):  # the data written reach the disk at the file's fsync
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        atomic_write_json({"new": 2}, str(target))
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == (
        f"[Errno {errno.ENOSPC}] cannot write {target}: the disk is full (no space left on device)"
    )
    with pytest.raises(OSError, match="disk is full") as caught:  # a write of the caller's code
        with atomic_open(str(target), "wb"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(target) in str(caught.value)
    assert os.listdir(tmp_path) == ["m.json"]
    assert json.loads(target.read_text()) == {"old": 1}


def test_an_error_of_the_callers_code_about_another_file_passes_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        with atomic_open(str(tmp_path / "out.json")) as f:
            open(tmp_path / "missing.txt").read()
            f.write("never")
    assert caught.value.filename == str(tmp_path / "missing.txt")
    assert os.listdir(tmp_path) == []
