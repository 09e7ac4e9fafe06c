"""What the ``sparsecheck`` command does before its imports.

Imported first by the package.  When this process is the ``sparsecheck`` command (or ``python -m
sparsecheck``):

* running ``diff`` or ``mask``, a thread asks the kernel (``posix_fadvise``) for the first
  :data:`EARLY_BYTES` of each side's safetensors files, alternating between the sides as the pass
  will read them, so that with a cold page cache the disk reads while Python imports numpy and
  the plugins.  The read pass's own read-ahead (``engine/_readahead.py``) takes over from there.
* numpy's BLAS gets one thread (unless ``OPENBLAS_NUM_THREADS`` is set or ``--workers 1`` is
  given): the pass's worker processes are the parallelism, and OpenBLAS's idle threads would
  otherwise start with numpy and compete with them for the cores.

Standard library only; nothing happens for any other use of the package.
"""

from __future__ import annotations

import os
import sys
import threading

#: How much of each side is asked for before the pass starts.
EARLY_BYTES = 512 << 20
_STEP = 32 << 20
_COMMANDS = ("diff", "mask")


def prepare_command_process(argv: list[str] | None = None) -> None:
    """Tune this process before the imports when it is the ``sparsecheck`` command."""
    argv = sys.argv if argv is None else argv
    if not argv or os.path.basename(argv[0]) not in ("sparsecheck", "-m"):
        return
    if not _one_worker(argv):
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    read_ahead_of_imports(argv)


def _one_worker(argv: list[str]) -> bool:
    """Whether ``argv`` asks for ``--workers 1`` (then numpy's BLAS keeps its threads)."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(arg == "--workers=1" or (arg == "--workers" and value == "1") for arg, value in pairs)


def read_ahead_of_imports(argv: list[str] | None = None) -> threading.Thread | None:
    """Start the early read-ahead for ``argv`` (default: this process's); the thread, or None."""
    argv = sys.argv if argv is None else argv
    if not hasattr(os, "posix_fadvise") or len(argv) < 4 or argv[1] not in _COMMANDS:
        return None
    if os.path.basename(argv[0]) not in ("sparsecheck", "-m"):
        return None
    sides = [files for files in map(_safetensors_files, argv[2:]) if files][:2]
    if len(sides) < 2:
        return None
    thread = threading.Thread(target=_advise, args=(sides,), name="sparsecheck-early-read", daemon=True)
    thread.start()
    return thread


def _safetensors_files(arg: str) -> list[str]:
    if arg.startswith("-"):
        return []
    if arg.endswith(".safetensors") and os.path.isfile(arg):
        return [arg]
    try:
        names = sorted(n for n in os.listdir(arg) if n.endswith(".safetensors"))
    except OSError:
        return []
    return [os.path.join(arg, n) for n in names]


def _advise(sides: list[list[str]]) -> None:
    spans = [_spans(files) for files in sides]
    for step in range(EARLY_BYTES // _STEP):
        for side in spans:
            if step < len(side):
                path, offset = side[step]
                try:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.posix_fadvise(fd, offset, _STEP, os.POSIX_FADV_WILLNEED)
                    finally:
                        os.close(fd)
                except OSError:
                    continue


def _spans(files: list[str]) -> list[tuple[str, int]]:
    """(file, offset) of each _STEP of the files, in order, up to EARLY_BYTES."""
    spans: list[tuple[str, int]] = []
    for path in files:
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        spans += [(path, offset) for offset in range(0, size, _STEP)]
        if len(spans) * _STEP >= EARLY_BYTES:
            break
    return spans[: EARLY_BYTES // _STEP]
