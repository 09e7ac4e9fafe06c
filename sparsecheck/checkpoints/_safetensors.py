"""Safetensors files read zero-copy from a memory map, without the safetensors library or torch.

A file is ``<u64 little-endian header length N><N bytes of JSON header><data>``; the header maps
each tensor name to its dtype, shape and ``data_offsets`` (relative to the data).  The header is
checked before anything is read (lengths, offsets and sizes within the file, no overlaps), so a
truncated or corrupt file fails at open with the file and tensor named.  Tensors are numpy views
of a read-only map; ``release`` drops a tensor's pages from the process so memory stays bounded
by the largest tensor, not the model.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from sparsecheck._dtypes import STORAGE, stored_bytes, unpack_codes, width
from sparsecheck._files import open_regular
from sparsecheck._json import JsonError, loads_strict, show
from sparsecheck.checkpoints import _watch
from sparsecheck.checkpoints._fingerprint import sampled_fingerprint
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor, TensorMeta
from sparsecheck.checkpoints._tying import tied_copies
from sparsecheck.errors import CheckpointError

#: Safetensors dtype codes → canonical dtype names: every dtype safetensors 0.8 reads.
DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
    "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
    "F4": "float4_e2m1fn",
}
#: The largest header read (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000
_CAN_DROP_PAGES = hasattr(mmap, "MADV_DONTNEED") and hasattr(mmap.mmap, "madvise")


class SafetensorsFile:
    """One safetensors file: its validated header and a read-only map of it."""

    def __init__(self, file: Path) -> None:
        self.file = file
        try:
            with open_regular(file) as handle:
                size = handle.seek(0, 2)
                handle.seek(0)
                header_length = self._header_length(handle.read(8), size)
                header = handle.read(header_length)
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                _watch.watch(file, os.fstat(handle.fileno()))
        except OSError as exc:
            raise CheckpointError(f"{file}: cannot read: {exc.strerror or exc}") from None
        #: Size of the length prefix plus the JSON header: where the data begins.
        self.data_start = 8 + header_length
        self.tensors = self._parse(header, size - self.data_start)

    def _header_length(self, prefix: bytes, size: int) -> int:
        if len(prefix) < 8:
            raise self._corrupt(f"only {size} bytes, too short for a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise self._corrupt(f"the header length ({length} bytes) is over the limit ({MAX_HEADER_BYTES})")
        if length > size - 8:
            raise self._corrupt(
                f"the header length ({length} bytes) reaches past the end of the file "
                f"({size} bytes): truncated, or not a safetensors file"
            )
        return int(length)

    def _parse(self, header: bytes, data_size: int) -> dict[str, StoredTensor]:
        try:
            entries = loads_strict(header)
        except JsonError as exc:
            if exc.duplicate is not None:
                raise self._corrupt(f"the header lists tensor {exc.duplicate!r} twice") from None
            if str(exc) == "nested too deep":
                raise self._corrupt("the header is nested too deep") from None
            raise self._corrupt("the header is not valid JSON: not a safetensors file, or corrupt") from None
        if not isinstance(entries, dict):
            raise self._corrupt("the header is not a JSON object")
        tensors: dict[str, StoredTensor] = {}
        for name, entry in entries.items():
            if name != "__metadata__":
                tensors[name] = self._stored(name, entry, data_size)
        self._check_overlaps(tensors)
        return tensors

    def _stored(self, name: str, entry: Any, data_size: int) -> StoredTensor:
        if not isinstance(entry, dict):
            raise self._corrupt(f"tensor {name!r}: header entry is not an object")
        code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if code not in DTYPES:
            raise self._corrupt(f"tensor {name!r}: unsupported dtype {show(code)}")
        if not _ints(shape) or any(d < 0 for d in shape):
            raise self._corrupt(f"tensor {name!r}: bad shape {show(shape)}")
        if not _ints(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise self._corrupt(f"tensor {name!r}: bad data_offsets {show(offsets)}")
        begin, end = offsets
        if end > data_size:
            raise self._corrupt(
                f"tensor {name!r}: data_offsets [{begin}, {end}] reach past the end of the data "
                f"({data_size} bytes): truncated?"
            )
        meta = TensorMeta(name, DTYPES[code], tuple(shape))
        expected = stored_bytes(meta.dtype, meta.numel)
        if expected is None:
            raise self._corrupt(f"tensor {name!r}: {code} {tuple(shape)} does not fill whole bytes")
        if end - begin != expected:
            raise self._corrupt(
                f"tensor {name!r}: {end - begin} bytes stored, but {code} {tuple(shape)} needs {expected}"
            )
        return StoredTensor(meta, self.file, self.data_start + begin, end - begin)

    def _check_overlaps(self, tensors: Mapping[str, StoredTensor]) -> None:
        ordered = sorted((t for t in tensors.values() if t.nbytes), key=lambda t: t.offset)
        for before, after in itertools.pairwise(ordered):
            if after.offset < before.offset + before.nbytes:
                raise self._corrupt(f"tensors {before.meta.name!r} and {after.meta.name!r} overlap")

    def _corrupt(self, detail: str) -> CheckpointError:
        return CheckpointError(f"{self.file}: corrupt safetensors file: {detail}")

    def array(self, name: str) -> np.ndarray:
        """The tensor as a read-only numpy view of the map (bits for bfloat16 and float8; the
        4- and 6-bit floats unpacked to one code per entry, a copy)."""
        stored = self.tensors[name]
        meta = stored.meta
        dtype = STORAGE[meta.dtype]
        if not stored.nbytes:
            return np.empty(meta.shape, dtype)
        _watch.check(self.file)  # a mapped read of a file that shrank would kill the process
        if width(meta.dtype) < 8:
            packed = np.frombuffer(self._map, np.uint8, stored.nbytes, stored.offset)
            codes = unpack_codes(packed, meta.dtype, meta.numel).reshape(meta.shape)
            codes.flags.writeable = False
            return codes
        flat = np.frombuffer(self._map, dtype, meta.numel, stored.offset)
        return flat.reshape(meta.shape)

    def release(self, name: str) -> None:
        """Drop the tensor's mapped pages from memory (they are read again from the file if needed)."""
        stored = self.tensors[name]
        _watch.check(self.file)  # the tensor was read from the file as it was opened
        if not _CAN_DROP_PAGES or not stored.nbytes:
            return
        start = stored.offset - stored.offset % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, start, stored.offset + stored.nbytes - start)

    def close(self) -> None:
        _watch.forget(self.file)
        with contextlib.suppress(BufferError):  # arrays still view the map; it closes with the last
            self._map.close()


class SafetensorsReader(CheckpointReader):
    """A checkpoint of one or more safetensors files (the shards of one model)."""

    def __init__(self, source: str, path: Path, files: Sequence[Path], format: str) -> None:
        super().__init__(source, path)
        self.format = format
        self._files: list[SafetensorsFile] = []
        self._owner: dict[str, SafetensorsFile] = {}
        self._tensors: dict[str, StoredTensor] = {}
        try:
            for file in files:
                self._add(SafetensorsFile(file))
        except BaseException:
            self.close()
            raise
        #: A tied output embedding stored as its own copy (config ``tie_word_embeddings``).
        self._aliases = tied_copies(path if path.is_dir() else path.parent, self._tensors)
        for alias in self._aliases:
            del self._tensors[alias]

    def _add(self, shard: SafetensorsFile) -> None:
        self._files.append(shard)
        for name, stored in shard.tensors.items():
            if name in self._owner:
                raise CheckpointError(
                    f"{shard.file}: tensor {name!r} is also stored in {self._owner[name].file.name}"
                )
            self._owner[name] = shard
            self._tensors[name] = stored

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self._tensors

    def aliases(self) -> Mapping[str, str]:
        return self._aliases

    def read(self, name: str) -> np.ndarray:
        name = self._aliases.get(name, name)
        return self._owner[name].array(name)

    def release(self, name: str) -> None:
        name = self._aliases.get(name, name)
        self._owner[name].release(name)

    def fingerprint(self) -> str:
        root = self.path if self.path.is_dir() else self.path.parent
        return sampled_fingerprint(root, {shard.file: shard.data_start for shard in self._files})

    def close(self) -> None:
        for shard in self._files:
            shard.close()


def _ints(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(type(v) is int for v in value)
