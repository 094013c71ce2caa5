"""One run per output folder: a lock held for the life of the run, and no fresh start over the
checkpoints of an earlier one.

Two runs writing to one ``OUTPUT_DIR`` interleave their checkpoints and ``metrics.json`` and lose
each other's final model. :func:`claim_output_dir` (called by ``stl_search.engine.setup.setup``
on the main process, before anything is written) takes an exclusive ``fcntl.flock`` on
``OUTPUT_DIR/.lock`` that the operating system releases when the process ends, however it ends,
and writes who holds it (pid, host, start time, command) into that file, so that a second run is
refused with the holder named. A training start without ``--resume`` over existing checkpoints is
refused too, unless ``--overwrite`` is given: the earlier run's checkpoints and records
(:data:`RUN_RECORDS`: ``metrics.json``, event files, evaluation results) are then deleted, so that
neither a later ``--resume`` nor ``metrics.json`` mixes the two runs.

:func:`write_run_config` writes the config a run used (``config.yaml``); ``setup`` calls it, except
for a resume over an earlier run's config, which the trainer writes once the checkpoint has loaded
(a refused resume leaves the earlier run's ``config.yaml`` as it was).
"""

from __future__ import annotations

import datetime
import fcntl
import fnmatch
import logging
import os
import shlex
import shutil
import socket
import sys
from typing import IO, Any, Dict, List

from .checkpoint import CHECKPOINT_NAME
from .io import atomic_open

__all__ = [
    "EVAL_ONLY_DIR",
    "LOCK_FILE",
    "ExistingRunError",
    "OutputDirInUseError",
    "RUN_RECORDS",
    "claim_output_dir",
    "earlier_checkpoints",
    "lock_output_dir",
    "release_output_dir",
    "write_run_config",
]

logger = logging.getLogger(__name__)

#: The folder of ``OUTPUT_DIR`` an ``--eval-only`` run writes its results into (train_net.py,
#: pretrain_reid.py): the training run's own evaluation stays as it was.
EVAL_ONLY_DIR = "eval"

#: The lock file inside ``OUTPUT_DIR``.
LOCK_FILE = ".lock"

#: What a training run records besides its checkpoints (names or glob patterns; folders
#: included): deleted with the checkpoints by ``--overwrite``. Logs (``log.txt``) are kept.
RUN_RECORDS = (
    "metrics.json",
    "events.out.tfevents.*",
    "eval_metrics.json",
    "reid_metrics.json",
    "inference",
    "eval",
)

#: Open lock files of this process, by real path of their folder (kept open: the lock lives as
#: long as the file stays open).
_HELD: Dict[str, IO[str]] = {}


class OutputDirInUseError(RuntimeError):
    """Another run holds the output folder's lock."""


class ExistingRunError(FileExistsError):
    """A fresh training start where an earlier run left checkpoints."""

    def __str__(self) -> str:
        return str(self.args[0])


def lock_output_dir(output_dir: str, what: str = "OUTPUT_DIR") -> None:
    """Hold the lock of ``output_dir`` (created if needed) until the process ends or
    :func:`release_output_dir`. Re-entrant within one process. ``what`` names the folder in the
    error (e.g. "index folder").

    Raises:
        OutputDirInUseError: naming the holder (pid, host, start, command) read from the lock file.
    """
    real = os.path.realpath(output_dir)
    if real in _HELD:
        return
    os.makedirs(real, exist_ok=True)
    lock = os.fdopen(os.open(os.path.join(real, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644), "r+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = ", ".join(line.strip() for line in lock if line.strip()) or "holder unknown"
        lock.close()
        raise OutputDirInUseError(
            f"{what} {output_dir} is in use by another run ({holder}). Wait for it to end or "
            f"choose another {what}."
        ) from None
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lock.seek(0)
    lock.truncate()
    lock.write(
        f"pid {os.getpid()}\nhost {socket.gethostname()}\nstarted {started}\n"
        f"command {shlex.join([sys.executable] + sys.argv)}\n"
    )
    lock.flush()
    _HELD[real] = lock


def release_output_dir(output_dir: str) -> None:
    """Release the lock this process holds on ``output_dir`` (no-op when it holds none)."""
    lock = _HELD.pop(os.path.realpath(output_dir), None)
    if lock is not None:
        lock.close()  # closing the file releases the flock


def earlier_checkpoints(output_dir: str) -> List[str]:
    """Checkpoint files (``model_*.pth``) and the ``last_checkpoint`` pointer in ``output_dir``."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(
        f for f in os.listdir(output_dir) if f == "last_checkpoint" or CHECKPOINT_NAME.match(f)
    )


def claim_output_dir(
    output_dir: str, *, resume: bool = False, eval_only: bool = False, overwrite: bool = False
) -> None:
    """Lock ``output_dir`` for this run; refuse a fresh training start over earlier checkpoints.

    Args:
        output_dir: the run's ``OUTPUT_DIR``.
        resume: ``--resume``: continuing the earlier run is what is asked.
        eval_only: ``--eval-only``: writes no checkpoint.
        overwrite: ``--overwrite``: delete the earlier run's checkpoints and records
            (:data:`RUN_RECORDS`) and start afresh.

    Raises:
        OutputDirInUseError: another run holds the folder.
        ExistingRunError: checkpoints exist and none of the three flags is given.
    """
    lock_output_dir(output_dir)
    if resume or eval_only:
        return
    existing = earlier_checkpoints(output_dir)
    if not existing and not overwrite:
        return
    if not overwrite:
        release_output_dir(output_dir)
        shown = ", ".join(existing[:4]) + (" ..." if len(existing) > 4 else "")
        raise ExistingRunError(
            f"OUTPUT_DIR {output_dir} holds checkpoints of an earlier run ({shown}): pass "
            "--resume to continue it, --overwrite to delete them and start afresh, or choose "
            "another OUTPUT_DIR."
        )
    records = [f for f in os.listdir(output_dir) if any(fnmatch.fnmatch(f, p) for p in RUN_RECORDS)]
    if not existing + records:
        return
    for name in existing + records:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    logger.warning(
        "--overwrite: deleted %d checkpoints and records of the earlier run in %s: %s",
        len(existing) + len(records),
        output_dir,
        ", ".join(sorted(existing + records)),
    )


def write_run_config(cfg: Any, name: str = "config.yaml") -> str:
    """Write ``cfg.dump()`` to ``cfg.OUTPUT_DIR/name`` atomically; returns the path."""
    path = os.path.join(cfg.OUTPUT_DIR, name)
    with atomic_open(path, "w") as f:
        f.write(cfg.dump())
    return path
