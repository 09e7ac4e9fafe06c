"""PyTorch state-dict files (``pytorch_model.bin``, ``.pt``): loaded safely, memory-mapped.

Each file is loaded with ``torch.load(weights_only=True, mmap=True)``, so only plain tensors
(and containers of them) are accepted and tensor data stays on disk until read.  Names whose
tensors share storage (tied weights saved twice) are aliases: the first name in sorted order is
the stored tensor, the others are listed by :meth:`TorchReader.aliases`.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import pickle
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsecheck._dtypes import STORAGE, from_torch_dtype
from sparsecheck._files import open_regular
from sparsecheck.checkpoints import _watch
from sparsecheck.checkpoints._fingerprint import sampled_fingerprint
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor, TensorMeta
from sparsecheck.errors import CheckpointError

_LEGACY_FORMAT = "mmap can only be used with files saved with"
_REFUSED_GLOBAL = re.compile(r"WeightsUnpickler error: (.*?)(?:\. Please|\n|$)")


class _TorchFile:
    """One loaded state dict: its tensors, aliases, and whether its data is a file map."""

    def __init__(self, file: Path) -> None:
        self.file = file
        status = os.stat(file)
        state, self.mapped = _load(file)
        if self.mapped:
            _watch.watch(file, status)
        self.tensors: dict[str, torch.Tensor] = {}
        self.aliases: dict[str, str] = {}
        by_storage: dict[tuple[Any, ...], str] = {}
        for name in sorted(state):
            tensor = state[name]
            key = _storage_key(tensor)
            if key is not None and key in by_storage:
                self.aliases[name] = by_storage[key]
                continue
            if key is not None:
                by_storage[key] = name
            self.tensors[name] = tensor
        self.stored = self._describe(state)

    def _describe(self, state: Mapping[str, torch.Tensor]) -> dict[str, StoredTensor]:
        pointers = [t.untyped_storage().data_ptr() for t in self.tensors.values() if t.numel()]
        base = min(pointers, default=0)
        stored: dict[str, StoredTensor] = {}
        for name in state:  # file order, for a storage-ordered listing
            tensor = self.tensors.get(name)
            if tensor is None:
                continue
            try:
                dtype = from_torch_dtype(tensor.dtype)
            except ValueError:
                raise CheckpointError(
                    f"{self.file}: tensor {name!r}: unsupported dtype {tensor.dtype}"
                ) from None
            offset = _address(tensor) - base if tensor.numel() else 0
            meta = TensorMeta(name, dtype, tuple(tensor.shape))
            stored[name] = StoredTensor(meta, self.file, offset, tensor.numel() * tensor.element_size())
        return stored

    def release(self, name: str) -> None:
        storage = self.tensors[name].untyped_storage()
        if self.mapped and storage.nbytes():
            _drop_pages(storage.data_ptr(), storage.nbytes())


class TorchReader(CheckpointReader):
    """A checkpoint of one or more torch state-dict files (the shards of one model)."""

    def __init__(self, source: str, path: Path, files: Sequence[Path], format: str) -> None:
        super().__init__(source, path)
        self.format = format
        self._files: list[_TorchFile] = []
        self._owner: dict[str, _TorchFile] = {}
        self._tensors: dict[str, StoredTensor] = {}
        self._aliases: dict[str, str] = {}
        for file in files:
            self._add(_TorchFile(file))

    def _add(self, shard: _TorchFile) -> None:
        self._files.append(shard)
        for name in [*shard.stored, *shard.aliases]:
            if name in self._owner:
                raise CheckpointError(
                    f"{shard.file}: tensor {name!r} is also stored in {self._owner[name].file.name}"
                )
            self._owner[name] = shard
        self._tensors.update(shard.stored)
        self._aliases.update(shard.aliases)

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self._tensors

    def aliases(self) -> Mapping[str, str]:
        return self._aliases

    def read(self, name: str) -> np.ndarray:
        """The tensor as a read-only numpy view (bits for bfloat16 and float8); aliases resolve."""
        name = self._aliases.get(name, name)
        _watch.check(self._owner[name].file)  # a mapped read of a file that shrank would kill the process
        tensor = self._owner[name].tensors[name]
        dtype = STORAGE[self._tensors[name].meta.dtype]
        if tensor.dtype.is_floating_point and dtype.kind != "f":
            tensor = tensor.view(getattr(torch, f"uint{dtype.itemsize * 8}"))
        array: np.ndarray = tensor.numpy().view()
        array.flags.writeable = False
        return array

    def release(self, name: str) -> None:
        name = self._aliases.get(name, name)
        _watch.check(self._owner[name].file)
        self._owner[name].release(name)

    def fingerprint(self) -> str:
        root = self.path if self.path.is_dir() else self.path.parent
        return sampled_fingerprint(root, {shard.file: None for shard in self._files})

    def close(self) -> None:
        for shard in self._files:
            _watch.forget(shard.file)
        self._files.clear()
        self._owner.clear()


def _load(file: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """Load ``file`` as a state dict; True when its data is memory-mapped from the file."""
    try:
        open_regular(file).close()  # torch.load would wait forever on a FIFO
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        try:
            state, mapped = torch.load(file, map_location="cpu", weights_only=True, mmap=True), True
        except RuntimeError as exc:
            if _LEGACY_FORMAT not in str(exc):
                raise
            state, mapped = torch.load(file, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as exc:
        found = _REFUSED_GLOBAL.search(str(exc))
        reason = found.group(1) if found else _first_line(exc)
        raise CheckpointError(
            f"{file}: not a plain tensor state dict; torch.load(weights_only=True) refused it: {reason}"
        ) from None
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"{file}: unreadable torch checkpoint: {_first_line(exc)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: not a state dict: it holds a {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            raise CheckpointError(
                f"{file}: not a state dict of tensors: {key!r} holds a {type(value).__name__}"
            )
        if value.device.type == "meta":
            raise CheckpointError(
                f"{file}: tensor {key!r} is a meta tensor: it holds no data "
                "(saved from a model on the meta device)"
            )
        # nn.Parameter values (``torch.save(dict(model.named_parameters()))``): the same storage
        state[key] = value.detach()
    if mapped and not _one_map(state.values(), file.stat().st_size):
        mapped = False
    return state, mapped


def _one_map(tensors: Any, size: int) -> bool:
    """Whether every storage lies within one file-sized span (the file's map), as torch maps it."""
    storages = [t.untyped_storage() for t in tensors]
    spans = [(s.data_ptr(), s.data_ptr() + s.nbytes()) for s in storages if s.nbytes()]
    return not spans or max(e for _, e in spans) - min(b for b, _ in spans) <= size


def _storage_key(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """What makes two names the same tensor: storage, offset, shape, strides and dtype."""
    if not tensor.numel():
        return None
    pointer = tensor.untyped_storage().data_ptr()
    return (pointer, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)


def _address(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr() + int(tensor.storage_offset()) * tensor.element_size()


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    function = ctypes.CDLL(None, use_errno=True).madvise
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def _drop_pages(address: int, length: int) -> None:
    """Drop a private file map's pages from memory; untouched pages re-read from the file."""
    madvise = _madvise()
    if madvise is not None:
        start = address - address % mmap.PAGESIZE
        madvise(start, length + address - start, mmap.MADV_DONTNEED)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
