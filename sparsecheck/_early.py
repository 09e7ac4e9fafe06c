"""What the ``sparsecheck`` command does before its imports.

Imported first by the package.  When this process is the ``sparsecheck`` command (or ``python -m
sparsecheck``):

* running ``diff`` or ``mask``, a thread asks the kernel (``posix_fadvise``) for both sides'
  safetensors files (only the first :data:`EARLY_BYTES` of each where the pair is larger than
  half the machine's memory), alternating between the sides as the pass will read them, so
  that with a cold page cache the disk reads while Python imports numpy and the plugins.  The
  read pass's own read-ahead (``engine/_readahead.py``) takes over from where this one stopped
  (:data:`ADVISED`).
* the garbage collector pauses until :func:`end_of_startup`: the imports and plugin loading make
  many objects and no garbage, and the collections they trigger cost ~10% of the start-up; the
  start-up's objects are then frozen out of later collections (``gc.freeze``).
* numpy's BLAS gets one thread (unless ``OPENBLAS_NUM_THREADS`` is set or ``--workers 1`` is
  given): the pass's worker processes are the parallelism, and OpenBLAS's idle threads would
  otherwise start with numpy and compete with them for the cores.

Standard library only; nothing happens for any other use of the package.
"""

from __future__ import annotations

import gc
import os
import sys
import threading

#: How much of each side is asked for before the pass starts, for a pair larger than half the memory.
EARLY_BYTES = 512 << 20
_STEP = 32 << 20
_COMMANDS = ("diff", "mask")
#: The most bytes one ``WILLNEED`` reads where the device's limits cannot be found.
_FALLBACK_ADVICE_BYTES = 128 << 10
#: Each file's leading bytes the early thread has asked for (by real path).
ADVISED: dict[str, int] = {}
_advice_bytes: dict[int, int] = {}
_gc_paused = False


def prepare_command_process(argv: list[str] | None = None) -> None:
    """Tune this process before the imports when it is the ``sparsecheck`` command."""
    argv = sys.argv if argv is None else argv
    if not argv or os.path.basename(argv[0]) not in ("sparsecheck", "-m"):
        return
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True
    if not _one_worker(argv):
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    read_ahead_of_imports(argv)


def end_of_startup() -> None:
    """The command has loaded its plugins and options: collect garbage again, leaving out the
    start-up's objects (they live as long as the process)."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


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
    sizes = [[_size(path) for path in files] for files in sides]
    whole = sum(map(sum, sizes)) <= memory_bytes() // 2  # the page cache keeps it all
    limit = None if whole else EARLY_BYTES
    spans = [_spans(files, side, limit) for files, side in zip(sides, sizes, strict=True)]
    for step in range(max(map(len, spans))):
        for side in spans:
            if step < len(side):
                path, offset = side[step]
                try:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        will_need(fd, offset, _STEP)
                    finally:
                        os.close(fd)
                except OSError:
                    continue
                ADVISED[os.path.realpath(path)] = offset + _STEP


def will_need(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to read ``nbytes`` of ``fd`` from ``offset`` in the background.

    Linux reads at most max(``read_ahead_kb``, ``max_sectors_kb``) of the device per
    ``POSIX_FADV_WILLNEED`` and silently drops the rest, so a long span is asked for in pieces
    of that size.
    """
    step = _advice_step(fd)
    for start in range(offset, offset + nbytes, step):
        os.posix_fadvise(fd, start, min(step, offset + nbytes - start), os.POSIX_FADV_WILLNEED)


def _advice_step(fd: int) -> int:
    device = os.fstat(fd).st_dev
    if device not in _advice_bytes:
        _advice_bytes[device] = _device_advice_bytes(device)
    return _advice_bytes[device]


def _device_advice_bytes(device: int) -> int:
    """max(read_ahead_kb, max_sectors_kb) of the block device (or its disk, for a partition)."""
    block = f"/sys/dev/block/{os.major(device)}:{os.minor(device)}"
    for queue in (f"{block}/queue", f"{block}/../queue"):
        try:
            limits = [int(_read(f"{queue}/{name}")) for name in ("read_ahead_kb", "max_sectors_kb")]
        except (OSError, ValueError):
            continue
        return max(max(limits) << 10, _FALLBACK_ADVICE_BYTES)
    return _FALLBACK_ADVICE_BYTES


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _spans(files: list[str], sizes: list[int], limit: int | None) -> list[tuple[str, int]]:
    """(file, offset) of each _STEP of the files, in order, up to ``limit`` bytes (None: all)."""
    pairs = zip(files, sizes, strict=True)
    spans = [(path, offset) for path, size in pairs for offset in range(0, size, _STEP)]
    return spans if limit is None else spans[: limit // _STEP]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def memory_bytes() -> int:
    """This machine's memory (a very large number where it cannot be found)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1 << 62
