"""Atomic file writes, and the checks on a file path that an option names.

A reader of the target sees either the old content or the new, never a half-written file:
the data goes to a temporary file in the same folder, is flushed to disk, then ``os.replace``
puts it in place.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sparsecheck.errors import UsageError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Files are created with the permissions ``open()`` would give them (tempfile's are 0600).
_FILE_MODE = 0o666 & ~_current_umask()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the content of ``path`` with ``data`` atomically (the folder must exist)."""
    with atomic_file(path) as file:
        file.write(data)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` atomically when the block ends without an
    exception (the folder must exist); with an exception, ``path`` is left as it was.

    A ``path`` that exists and is not a regular file (``/dev/stdout``, a FIFO, a device) is never
    replaced: it is written directly, as a shell redirection would.
    """
    target = Path(path)
    if is_special(target):
        with open(target, "wb") as direct:
            yield direct
            direct.flush()
        return
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def is_special(path: Path) -> bool:
    """Whether ``path`` exists and is not a regular file or a folder (a device, FIFO or socket)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace the content of ``path`` with ``text`` atomically (the folder must exist)."""
    write_bytes_atomic(path, text.encode(encoding))


def prepare_output_path(path: Path, option: str) -> Path:
    """Check the file path given to ``option`` and create its folder.

    Raises UsageError, naming the option and the path, when the path is a directory or its
    folder cannot be created.
    """
    if path.is_dir():
        raise UsageError(f"option {option}: {path} is a directory; give a file path")
    if is_special(path):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"option {option}: cannot create the folder of {path}: {exc.strerror or exc}"
        ) from None
    return path


def write_output(path: Path, data: bytes, option: str) -> None:
    """Write the file an option names atomically; an OS error becomes a UsageError."""
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise UsageError(f"option {option}: cannot write {path}: {exc.strerror or exc}") from None


def append_output(path: Path, data: bytes, option: str) -> None:
    """Append ``data`` to the file an option names in one ``write`` (``O_APPEND``): what others
    wrote there stays, and concurrent appenders never interleave within it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise UsageError(f"option {option}: cannot append to {path}: {exc.strerror or exc}") from None
