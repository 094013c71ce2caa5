"""Atomic writes and safe loads: nothing this project writes is ever left half-written.

A write goes to a temp file beside its target, named ``.<target>.<host>.<pid>.<8 hex>.stl-tmp``
(``host``: this machine's name, letters, digits, ``-`` and ``_`` only), which is fsync'ed, renamed
over the target, and the directory fsync'ed. An exception removes the temp file; a kill cannot,
so each run removes those its killed predecessors left in its output folder
(:func:`remove_stale_temp_files`, called by ``stl_search.engine.setup.setup``): only in the folder
itself, and only those written on this machine by a process that is gone. A pid says nothing
about a process of another machine: on a shared file system, the temp files of other hosts are
left alone, live or not.

A write that fails (a folder that cannot be made or written, a full disk) raises an ``OSError``
of the same errno (so the same subclass: ``PermissionError`` ...) that names the target, never
the temp file the user has not heard of; a full disk is said as such.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import socket
from typing import IO, Any, Iterator, List, Optional, Tuple

import torch

TEMP_SUFFIX = ".stl-tmp"
_TEMP_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}"
    + re.escape(TEMP_SUFFIX)
    + "$"
)


def host_tag() -> str:
    """This machine's name as it appears in temp-file names (no dots: the name parses back)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"


def _create_temp_file(path: str) -> Tuple[int, str]:
    """A new temp file beside ``path``, created like ``open(..., "w")`` would: mode 0o666 less the
    umask (``tempfile.mkstemp`` would give 0o600)."""
    directory, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(
            directory, f".{name}.{host_tag()}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        )
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 2**32 names: another writer of this process drew the same
            continue


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot be opened
    (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_error(error: OSError, path: str, *internal: str) -> OSError:
    """``error`` (of making the folder, or creating, writing, syncing or renaming the temp file
    of ``path``) said as a failure to write ``path``, with its errno kept (so its subclass).

    The file ``error`` names is added when it is a folder on the way, not ``path`` itself, a temp
    file of :func:`atomic_open` or one of ``internal`` (a writer's own staging names).
    """
    reason = getattr(error, "write_reason", None)  # already said by an inner write
    if reason is None:
        if error.errno == errno.ENOSPC:
            reason = "the disk is full (no space left on device)"
        else:
            reason = error.strerror or str(error)
        named = str(error.filename) if error.filename else ""
        if (
            named
            and named not in (path, *internal)
            and not _TEMP_NAME.match(os.path.basename(named))
        ):
            reason += f" ({named})"  # a folder on the way
    said = OSError(error.errno, f"cannot write {path}: {reason}")
    said.write_reason = reason
    return said


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success, fsync it, rename it over ``path`` and
    fsync the directory. The new file's permissions are those of a plain ``open`` (the umask's).

    A crash or an exception leaves the previous ``path`` (if any) untouched; an exception also
    leaves no temp file.

    Raises:
        OSError: naming ``path`` (module docstring) when the folder cannot be made or the file
            cannot be written (a full disk included). An ``OSError`` of the caller's code that
            names another file, or has no errno (this project's own subclasses), passes unchanged.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = _create_temp_file(path)
    except OSError as e:
        raise write_error(e, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp, path):
            raise write_error(e, path) from None
        raise
    _fsync_directory(directory)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows: os.kill would terminate the process
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(directory: str) -> List[str]:
    """Remove the temp files of :func:`atomic_open` in ``directory`` (not its sub-folders) that
    a writer of this machine left when it was killed: names of this module's pattern, with this
    host's name and the pid of no live process. Temp files of other hosts (a shared file system)
    and of live processes are never touched.

    Returns:
        The removed paths.
    """
    removed = []
    host = host_tag()
    for name in sorted(os.listdir(directory)):
        match = _TEMP_NAME.match(name)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def atomic_write_json(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def safe_torch_load(path: str) -> Any:
    """Load a checkpoint without executing pickled code where torch allows (``weights_only``).

    Checkpoints written by this project hold tensors and plain Python types only.
    """
    with open(path, "rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def sha256_of(path: str, *, missing_ok: bool = False) -> Optional[str]:
    """The hex sha256 of the file at ``path``: how the index, the export and their checks tell
    whether a weights file, shard or graph is the one recorded.

    ``missing_ok``: None for an empty path or one that is not a file (e.g. weights given as a
    catalog name) instead of ``FileNotFoundError``.
    """
    if missing_ok and (not path or not os.path.isfile(path)):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
