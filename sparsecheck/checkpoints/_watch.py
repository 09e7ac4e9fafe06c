"""Checkpoint files that must not change while a run reads them.

Tensors are read from memory maps: a mapped file that shrinks kills the reading process with
SIGBUS, and one rewritten in place mixes two versions into one result.  Each file a reader maps
is recorded here at open (size, modification time, inode); :func:`check` compares before and
after each tensor is read, and :func:`first_changed` tells, after a worker process died, whether
a file changing under it is why.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sparsecheck.errors import CheckpointError

_LOCK = threading.Lock()
#: Path → (size, mtime_ns, inode) when it was opened.
_OPENED: dict[Path, tuple[int, int, int]] = {}


def _identity(status: os.stat_result) -> tuple[int, int, int]:
    return status.st_size, status.st_mtime_ns, status.st_ino


def watch(path: Path, status: os.stat_result) -> None:
    """Record ``path`` as opened with ``status`` (its ``os.fstat`` at open)."""
    with _LOCK:
        _OPENED[path] = _identity(status)


def forget(path: Path) -> None:
    with _LOCK:
        _OPENED.pop(path, None)


def changed(path: Path) -> str | None:
    """How ``path`` changed since it was opened, or None (also for a path never watched)."""
    with _LOCK:
        before = _OPENED.get(path)
    if before is None:
        return None
    try:
        now = _identity(os.stat(path))
    except OSError as exc:
        return f"it is gone ({exc.strerror or exc})"
    if now == before:
        return None
    if now[2] != before[2]:
        return "it was replaced by another file"
    if now[0] != before[0]:
        return f"its size went from {before[0]} to {now[0]} bytes"
    return "it was rewritten (its modification time changed)"


def check(path: Path) -> None:
    """Raise a :class:`CheckpointError` naming ``path`` when it changed since it was opened."""
    how = changed(path)
    if how is not None:
        raise CheckpointError(f"{path}: changed during the run ({how}); run again once it is written")


def first_changed() -> CheckpointError | None:
    """The error for the first watched file that changed, if any."""
    with _LOCK:
        paths = list(_OPENED)
    for path in paths:
        how = changed(path)
        if how is not None:
            return CheckpointError(f"{path}: changed during the run ({how}); run again once it is written")
    return None
