"""The reader interface every checkpoint format implements, and what it says of a stored tensor."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TensorMeta:
    """What is known about a stored tensor without reading it."""

    name: str
    #: Canonical dtype name: ``bfloat16``, ``float16``, ``float32``, ``float64``, ``int64``, …
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class StoredTensor:
    """Where a tensor lives: its metadata plus the file and byte offset (for read ordering)."""

    meta: TensorMeta
    file: Path
    offset: int
    nbytes: int


class CheckpointReader(ABC):
    """Lists a checkpoint's tensors and reads them one at a time.

    Implementations must not hold more than the tensor being read in memory, must never
    write into the checkpoint's folder, and raise :class:`~sparsecheck.errors.CheckpointError`
    naming the file (and tensor) for anything unreadable.
    """

    #: A short name of the format, e.g. ``safetensors``, ``safetensors-sharded``, ``torch``.
    format: str
    #: True when reads go over a network: the pass announces its names (:meth:`will_read`)
    #: and forks no worker processes.
    remote: bool = False

    def __init__(self, source: str, path: Path) -> None:
        #: What the user wrote (a path or a hub id).
        self.source = source
        #: The resolved local path.
        self.path = path

    @abstractmethod
    def tensors(self) -> Mapping[str, StoredTensor]:
        """Every stored tensor by name (aliases excluded)."""

    def aliases(self) -> Mapping[str, str]:
        """Names that are the same storage as another name (tied weights): alias → target."""
        return {}

    @abstractmethod
    def read(self, name: str) -> np.ndarray:
        """Return one tensor's stored data as a read-only numpy array of its shape (it may map
        the file); bfloat16 and float8 come as unsigned integers holding the bits (see
        ``sparsecheck._dtypes.STORAGE``).  An alias name reads its target."""

    def will_read(self, names: Sequence[str]) -> None:  # noqa: B027 - optional hook, empty by design
        """The stored names the pass will :meth:`read`, in order (a remote reader fetches ahead)."""

    def release(self, name: str) -> None:  # noqa: B027 - optional hook, empty by design
        """Tell the reader ``name`` is no longer needed (lets it drop mapped pages)."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A content fingerprint: equal for byte-identical checkpoints, cheap to compute."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release files and maps."""
