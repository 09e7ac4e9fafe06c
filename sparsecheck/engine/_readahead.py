"""Keep the disk busy ahead of the read pass, and let the page cache go behind it.

A thread asks the kernel (``posix_fadvise(WILLNEED)``) for the stored bytes of the coming tensors,
in storage order, beyond what the command's early read-ahead (``sparsecheck/_early.py``) already
asked for: the disk reads while the cores compare.  A pass that fits in half the machine's memory
is asked for whole; a larger one only :data:`WINDOW` bytes ahead of the pass, and the bytes of
finished tensors are handed back (``DONTNEED``), so a model larger than RAM does not push
everything else out of the page cache first.  Local files only (remote readers fetch ahead
themselves); nothing happens where ``posix_fadvise`` is missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from sparsecheck._early import ADVISED, memory_bytes, will_need
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor

#: How far ahead of a pass larger than half the memory the kernel is asked to read.
WINDOW = 256 << 20
CAN_ADVISE = hasattr(os, "posix_fadvise")

Span = tuple[Path, int, int]  # file, offset, bytes


class ReadAhead:
    """Read-ahead over ``spans``: each tensor name's stored spans, in the order of the pass."""

    def __init__(self, spans: Sequence[Sequence[Span]], drop_behind: bool) -> None:
        self.spans, self.drop_behind = spans, drop_behind
        early = {file: ADVISED.get(os.path.realpath(file), 0) for file in {f for s in spans for f, _, _ in s}}
        # what the early read-ahead asked for does not count against the window
        self._sizes = [
            0 if all(o + n <= early[f] for f, o, n in name_spans) else sum(n for _, _, n in name_spans)
            for name_spans in spans
        ]
        self._done = 0  # names the pass finished
        self._done_bytes = 0
        self._closed = False
        self._files: dict[Path, int] = {}
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="sparsecheck-readahead", daemon=True)
        self._thread.start()

    @classmethod
    def for_pass(
        cls,
        names: Sequence[str],
        where: Mapping[str, Mapping[str, StoredTensor]],
        readers: Mapping[str, CheckpointReader],
    ) -> ReadAhead | None:
        """A read-ahead for the pass over local safetensors files, or None where it does not apply."""
        if not CAN_ADVISE:
            return None
        local = {rid for rid, r in readers.items() if not r.remote and r.format.startswith("safetensors")}
        spans = [
            [(s.file, s.offset, s.nbytes) for rid, s in where[name].items() if rid in local and s.nbytes]
            for name in names
        ]
        total = sum(n for name_spans in spans for _, _, n in name_spans)
        if total == 0:
            return None
        return cls(spans, drop_behind=total > memory_bytes() // 2)

    def advance(self, done: int) -> None:
        """The pass has finished the first ``done`` names."""
        with self._wake:
            if self.drop_behind:
                for name_spans in self.spans[self._done : done]:
                    self._advise(name_spans, os.POSIX_FADV_DONTNEED)
            self._done_bytes += sum(self._sizes[self._done : done])
            self._done = done
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        for fd in self._files.values():
            os.close(fd)

    def _run(self) -> None:
        asked_bytes = 0
        for index, name_spans in enumerate(self.spans):
            with self._wake:
                while not self._closed and self.drop_behind and asked_bytes - self._done_bytes > WINDOW:
                    self._wake.wait()
                if self._closed:
                    return
                if index < self._done:  # the pass is already past it
                    asked_bytes += self._sizes[index]
                    continue
            if self._sizes[index]:
                self._advise(name_spans, os.POSIX_FADV_WILLNEED)  # may wait for the disk: unlocked
            asked_bytes += self._sizes[index]

    def _advise(self, spans: Sequence[Span], advice: int) -> None:
        for file, offset, nbytes in spans:
            try:
                fd = self._files.get(file)
                if fd is None:
                    fd = self._files[file] = os.open(file, os.O_RDONLY)
                if advice == os.POSIX_FADV_WILLNEED:
                    will_need(fd, offset, nbytes)
                else:
                    os.posix_fadvise(fd, offset, nbytes, advice)
            except OSError:  # advice only: the pass reads the file itself and reports errors
                continue
