"""A sampled content fingerprint of checkpoint files.

Per file, in order of its name relative to the checkpoint's folder, the hash takes the
relative name, the file's size, its header (a safetensors header in full; for a file without
one, its first and last 64 KiB) and 16 evenly spaced 4 KiB blocks of its data (all of the data
when it is that small).  Byte-identical copies always fingerprint equal, and any change to a
header, a size or a file name changes the fingerprint; a change that falls between the sampled
blocks does not.  It identifies a checkpoint in reports and caches; it is not a full hash.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from sparsecheck.errors import CheckpointError

BLOCK = 4096
SAMPLES = 16
EDGE = 64 * 1024


def sampled_fingerprint(root: Path, files: Mapping[Path, int | None]) -> str:
    """Fingerprint ``files`` (each mapped to its header size, or None) named relative to ``root``."""
    digest = hashlib.sha256()
    named = sorted((file.relative_to(root).as_posix(), file) for file in files)
    for relative, file in named:
        try:
            with open(file, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                digest.update(f"{relative}\0{size}\0".encode())
                for start, end in sampled_ranges(size, files[file]):
                    handle.seek(start)
                    digest.update(handle.read(end - start))
        except OSError as exc:
            raise CheckpointError(f"{file}: cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest()[:16]


def sampled_ranges(size: int, header: int | None) -> list[tuple[int, int]]:
    """Byte ranges to hash of a file of ``size`` bytes (``header`` of them a header, or None):
    the header (or both edges), then the sampled data blocks."""
    if header is None:
        heads, data_start = [(0, min(EDGE, size)), (max(0, size - EDGE), size)], 0
    else:
        heads, data_start = [(0, header)], header
    length = size - data_start
    if length <= SAMPLES * BLOCK:
        return [*heads, (data_start, size)]
    step = (length - BLOCK) // (SAMPLES - 1)
    return heads + [(data_start + i * step, data_start + i * step + BLOCK) for i in range(SAMPLES)]
