"""Large arrays from forked worker processes to the main one through shared memory.

A worker's memoized values (packed masks above all: a bit per entry, 840 MB for a 7B model)
pickled in band are copied about five times on their way to the main process (pickled, pickled
again into the pool's pipe, read, unpickled twice), and the main process, which reduces every
tensor in order, does half of that copying.  With :class:`SharedBuffers` a worker pickles them
with protocol 5 and writes each buffer of at least :data:`LARGE` bytes to a file in
``/dev/shm`` (one copy); the main process maps the file copy-on-write (no copy) and removes its
name at once, so the memory goes with the last array that views it.  A buffer that cannot be
written there (no ``/dev/shm``, or it is full) travels in band.  Files a pass leaves behind (a
result never read, after an error) are removed when the pass ends (:meth:`remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Buffers at least this large go through shared memory; smaller ones stay in the pickle.
LARGE = 1 << 20
FOLDER = Path("/dev/shm")


class SharedBuffers:
    """The shared-memory files of one pass, named ``sparsecheck-<pid>-<token>-<worker pid>-<n>``."""

    def __init__(self) -> None:
        self.prefix = f"sparsecheck-{os.getpid()}-{secrets.token_hex(4)}-"
        self._count = 0

    @staticmethod
    def available() -> bool:
        """Whether this machine has a writable ``/dev/shm``."""
        return FOLDER.is_dir() and os.access(FOLDER, os.W_OK)

    def dumps(self, value: Any) -> tuple[bytes, list[str]]:
        """``value`` pickled, and the names of the files its large buffers were written to."""
        names: list[str] = []

        def out_of_band(buffer: pickle.PickleBuffer) -> bool:
            with buffer.raw() as view:
                name = self._write(view) if view.nbytes >= LARGE else None
            if name is None:
                return True  # in band
            names.append(name)
            return False

        try:
            return pickle.dumps(value, 5, buffer_callback=out_of_band), names
        except BaseException:
            for name in names:
                _unlink(name)
            raise

    @staticmethod
    def loads(data: bytes, names: Sequence[str]) -> Any:
        """What :meth:`dumps` pickled, its buffers mapped from their files (then removed)."""
        return pickle.loads(data, buffers=[_attach(name) for name in names])

    def remove_leftovers(self) -> None:
        """Remove this pass's files that no process mapped."""
        for path in FOLDER.glob(f"{self.prefix}*"):
            _unlink(path.name)

    def _write(self, view: memoryview) -> str | None:
        self._count += 1
        name = f"{self.prefix}{os.getpid()}-{self._count}"
        try:
            fd = os.open(FOLDER / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return None
        try:
            written = 0
            while written < view.nbytes:
                written += os.write(fd, view[written:])
        except OSError:  # /dev/shm is full: this buffer travels in band
            _unlink(name)
            return None
        finally:
            os.close(fd)
        return name


def _attach(name: str) -> mmap.mmap:
    fd = os.open(FOLDER / name, os.O_RDONLY)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)
        _unlink(name)


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(FOLDER / name)
