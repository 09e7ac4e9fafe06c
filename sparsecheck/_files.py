"""Opening input files safely: only regular files, never blocking on a FIFO or a device.

``open()`` on a FIFO waits for a writer forever, and a device such as ``/dev/zero`` never ends;
:func:`open_regular` opens without blocking, checks the file type, and refuses anything but a
regular file with an :class:`OSError` whose ``strerror`` says so (callers already turn an
``OSError`` into one line naming the file).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

NOT_REGULAR = "not a regular file (a FIFO, socket or device)"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for binary reading; an :class:`OSError` unless it is a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, NOT_REGULAR, os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of regular file ``path``; an :class:`OSError` when it holds more than ``limit``."""
    with open_regular(path) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", os.fspath(Path(path)))
    return data
