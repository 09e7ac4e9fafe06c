"""Mask files: which entries a fine-tuning run changed, as packed bits (METRICS.md, "Mask").

A mask file is a safetensors file holding, for every tensor name of the model, one uint8 tensor
of ``np.packbits(mask.reshape(-1), bitorder="little")`` (entry i is bit i % 8 of byte i // 8;
the last byte's unused bits are 0).  Its ``__metadata__`` (str → str) holds:

- ``format``: ``sparsecheck-mask``; ``version``: ``1``;
- ``shapes``: JSON ``{"name": [m, n], ...}``, every tensor's shape, in the order written;
- ``policy`` and ``tol``: the equality policy that made the mask;
- ``base_source``/``tuned_source``, ``base_fingerprint``/``tuned_fingerprint`` and
  ``base_dtypes``/``tuned_dtypes`` (comma-separated dtypes each checkpoint stores).

A :class:`MaskFile` is a read-only checkpoint of bool tensors, so the tensor pairing of
checkpoints pairs mask files too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from sparsecheck._atomic import atomic_file
from sparsecheck.checkpoints._fingerprint import sampled_fingerprint
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor, TensorMeta
from sparsecheck.checkpoints._safetensors import SafetensorsFile
from sparsecheck.errors import CheckpointError, UsageError
from sparsecheck.metrics._equality import POLICIES, EqualityPolicy

FORMAT = "sparsecheck-mask"
VERSION = "1"
#: Bytes copied at a time from the spool into the mask file.
_COPY_BYTES = 1 << 24
#: Set bits of every byte value (for numpy < 2.0, which lacks ``np.bitwise_count``).
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int64)
_bitwise_count = getattr(np, "bitwise_count", None)


def packed_size(numel: int) -> int:
    """Bytes that hold ``numel`` packed bits."""
    return (numel + 7) // 8


def popcount(packed: np.ndarray, numel: int) -> int:
    """Set bits among the first ``numel`` bits of ``packed`` (little bit order), unpacking nothing."""
    full, rest = divmod(numel, 8)
    counted = count = 0
    if _bitwise_count is not None and packed.flags.c_contiguous:  # 8 bytes at a time
        counted = full // 8 * 8
        count = int(_bitwise_count(packed[:counted].view(np.uint64)).sum(dtype=np.int64))
    count += int(_POPCOUNT[packed[counted:full]].sum())
    if rest:
        count += int(_POPCOUNT[int(packed[full]) & ((1 << rest) - 1)])
    return count


def mask_metadata(policy: EqualityPolicy, base: CheckpointReader, tuned: CheckpointReader) -> dict[str, str]:
    """The metadata of a mask of ``base`` → ``tuned`` made under ``policy`` (for :class:`MaskWriter`)."""

    def dtypes(reader: CheckpointReader) -> str:
        return ",".join(sorted({t.meta.dtype for t in reader.tensors().values()}))

    return {
        "policy": policy.name,
        "tol": repr(policy.tol),
        "base_source": base.source,
        "tuned_source": tuned.source,
        "base_fingerprint": base.fingerprint(),
        "tuned_fingerprint": tuned.fingerprint(),
        "base_dtypes": dtypes(base),
        "tuned_dtypes": dtypes(tuned),
    }


class MaskWriter:
    """Collects packed masks tensor by tensor; ``close()`` writes the file atomically.

    The packed bits go to an anonymous temporary file as they come (the safetensors header,
    which comes first, is known only at the end), so memory stays flat however large the model.
    Leaving a ``with`` block by an exception writes nothing.
    """

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, str]) -> None:
        bad = [key for key, value in metadata.items() if not isinstance(value, str)]
        if bad:
            raise TypeError(f"mask metadata values must be strings: {', '.join(bad)}")
        problem = _policy_problem(metadata)
        if problem:
            raise ValueError(f"mask metadata: {problem} (see mask_metadata)")
        self.path = Path(path)
        self.metadata = dict(metadata)
        self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - open until close() or _discard()
        self._offsets: dict[str, tuple[int, int]] = {}
        self._shapes: dict[str, list[int]] = {}
        self._closed = False

    def add(self, name: str, mask: np.ndarray) -> None:
        """Add the bool mask of tensor ``name`` (True = changed), in the tensor's shape."""
        if mask.dtype != np.bool_:
            raise TypeError(f"mask of {name!r} must be bool, not {mask.dtype}")
        self.add_packed(name, np.packbits(mask.reshape(-1), bitorder="little"), mask.shape)

    def add_packed(self, name: str, packed: np.ndarray, shape: Sequence[int]) -> None:
        """Add the mask of tensor ``name`` already packed (``np.packbits``, little bit order)."""
        if self._closed:
            raise ValueError(f"{self.path}: mask writer is closed")
        if name in self._offsets:
            raise ValueError(f"mask of {name!r} added twice")
        start = self._spool.tell()
        self._spool.write(np.ascontiguousarray(packed, dtype=np.uint8).data)
        self._offsets[name] = (start, self._spool.tell())
        self._shapes[name] = list(shape)

    def close(self) -> None:
        """Write the file (once); later calls do nothing."""
        if self._closed:
            return
        metadata = {**self.metadata, "format": FORMAT, "version": VERSION, "shapes": json.dumps(self._shapes)}
        header: dict[str, Any] = {"__metadata__": metadata}
        for name, (start, end) in self._offsets.items():
            header[name] = {"dtype": "U8", "shape": [end - start], "data_offsets": [start, end]}
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        try:
            with atomic_file(self.path) as file:
                file.write(struct.pack("<Q", len(encoded)) + encoded)
                file.flush()
                _copy(self._spool, file, self._spool.tell())
        finally:
            self._discard()

    def _discard(self) -> None:
        self._closed = True
        self._spool.close()

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        if kind is None:
            self.close()
        else:
            self._discard()


def _copy(source: BinaryIO, target: BinaryIO, size: int) -> None:
    """Append the first ``size`` bytes of ``source`` to ``target``, in the kernel where it can."""
    copied = 0
    if hasattr(os, "copy_file_range"):
        with contextlib.suppress(OSError):  # e.g. across file systems on older kernels
            while copied < size:
                step = os.copy_file_range(source.fileno(), target.fileno(), size - copied, copied)
                if step == 0:
                    break
                copied += step
    source.seek(copied)
    target.seek(0, os.SEEK_END)
    shutil.copyfileobj(source, target, _COPY_BYTES)


class MaskFile(CheckpointReader):
    """A mask file opened for reading: ``read(name)`` is the bool mask in the tensor's shape."""

    format = FORMAT

    def __init__(self, path: Path, file: SafetensorsFile, metadata: Mapping[str, str]) -> None:
        super().__init__(str(path), path)
        self.metadata = dict(metadata)
        self._file = file
        self._tensors: dict[str, StoredTensor] = {}
        for name, shape in _shapes(path, metadata, file).items():
            stored = file.tensors[name]
            self._tensors[name] = StoredTensor(
                TensorMeta(name, "bool", shape), path, stored.offset, stored.nbytes
            )

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> MaskFile:
        """Open and validate ``path``; errors name the file."""
        path = Path(path)
        if path.is_dir():
            raise UsageError(f"{path}: is a folder, not a mask file (write one with `sparsecheck mask`)")
        file = SafetensorsFile(path)
        try:
            return cls(path, file, _metadata(path, file))
        except BaseException:
            file.close()
            raise

    @property
    def policy(self) -> EqualityPolicy:
        """The equality policy the mask was made with."""
        return EqualityPolicy(self.metadata["policy"], float(self.metadata["tol"]))

    def names(self) -> list[str]:
        """Tensor names, in the order written."""
        return list(self._tensors)

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self._tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return self._stored(name).meta.shape

    def packed(self, name: str) -> np.ndarray:
        """The packed bits of ``name`` (read-only uint8, little bit order)."""
        self._stored(name)
        return self._file.array(name)

    def read(self, name: str) -> np.ndarray:
        """The mask of ``name``: a bool array in the tensor's shape (True = changed)."""
        meta = self._stored(name).meta
        bits = np.unpackbits(self.packed(name), count=meta.numel, bitorder="little")
        return bits.view(np.bool_).reshape(meta.shape)

    def count(self, name: str) -> int:
        """Changed entries of ``name``."""
        return popcount(self.packed(name), self._stored(name).meta.numel)

    def release(self, name: str) -> None:
        self._file.release(name)

    def fingerprint(self) -> str:
        return sampled_fingerprint(self.path.parent, {self.path: self._file.data_start})

    def close(self) -> None:
        self._file.close()

    def _stored(self, name: str) -> StoredTensor:
        if name not in self._tensors:
            raise CheckpointError(f"{self.path}: the mask file has no tensor {name!r}")
        return self._tensors[name]

    def __enter__(self) -> MaskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _metadata(path: Path, file: SafetensorsFile) -> dict[str, str]:
    """The validated ``__metadata__`` of a (validated) safetensors file."""
    with open(path, "rb") as handle:
        handle.seek(8)
        header = json.loads(handle.read(file.data_start - 8))
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        detail = f"its metadata format is {found!r}" if found else "it has no format metadata"
        raise UsageError(
            f"{path}: not a sparsecheck mask file ({detail}, not {FORMAT!r}); "
            "write one with `sparsecheck mask`"
        )
    if metadata.get("version") != VERSION:
        raise UsageError(
            f"{path}: mask file version {metadata.get('version')!r} is not supported (this sparsecheck reads "
            f"version {VERSION})"
        )
    problem = _policy_problem(metadata)
    if problem:
        raise _corrupt(path, problem)
    return {str(key): str(value) for key, value in metadata.items()}


def _policy_problem(metadata: Mapping[str, Any]) -> str:
    """What is wrong with the ``policy`` and ``tol`` entries, or ``""``."""
    if metadata.get("policy") not in POLICIES:
        return f"policy {metadata.get('policy')!r} is not one of {', '.join(POLICIES)}"
    try:
        float(metadata.get("tol", ""))
    except (TypeError, ValueError):
        return f"bad tol {metadata.get('tol')!r}"
    return ""


def _shapes(path: Path, metadata: Mapping[str, str], file: SafetensorsFile) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape from the metadata, checked against the packed tensors stored."""
    try:
        shapes = json.loads(metadata.get("shapes", ""))
    except ValueError:
        raise _corrupt(path, "the shapes metadata is not JSON") from None
    if not isinstance(shapes, dict):
        raise _corrupt(path, "the shapes metadata is not a JSON object")
    extra = sorted(set(file.tensors) - set(shapes))
    if extra:
        raise _corrupt(path, f"tensor {extra[0]!r} has no shape in the metadata")
    result: dict[str, tuple[int, ...]] = {}
    for name, shape in shapes.items():
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise _corrupt(path, f"tensor {name!r}: bad shape {shape!r}")
        stored = file.tensors.get(name)
        if stored is None:
            raise _corrupt(path, f"tensor {name!r} is in the shapes metadata but not stored")
        meta = TensorMeta(name, "bool", tuple(shape))
        if stored.meta.dtype != "uint8" or stored.meta.shape != (packed_size(meta.numel),):
            raise _corrupt(
                path,
                f"tensor {name!r}: expected uint8 ({packed_size(meta.numel)},) holding the bits of shape "
                f"{tuple(shape)}, found {stored.meta.dtype} {stored.meta.shape}",
            )
        result[name] = meta.shape
    return result


def _corrupt(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{path}: corrupt mask file: {detail}")
