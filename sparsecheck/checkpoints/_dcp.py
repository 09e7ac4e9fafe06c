"""``torch.distributed.checkpoint`` folders (``.metadata`` + ``*.distcp``), read tensor by tensor.

What FSDP2 and many RL frameworks save: the ``.metadata`` file lists every tensor's dtype,
shape and chunks (one per rank's shard); each chunk is a ``torch.save`` blob at an offset of
a ``.distcp`` file.  A tensor is assembled from its chunks when the pass reads it, so memory
holds one tensor, never the model.  Names are the saved state dict's keys, nested keys joined
with dots as DCP flattens them (``{"model": state}`` saves ``model.model.layers.0…``;
leave the prefix to ``include`` or compare DCP with DCP).  Needs torch.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck._extras import require
from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._fingerprint import sampled_fingerprint
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor, TensorMeta
from sparsecheck.errors import CheckpointError

METADATA = ".metadata"


@hookimpl(tryfirst=True)
def sparsecheck_open_checkpoint(source: str, path: Path | None) -> CheckpointReader | None:
    try:
        is_dcp = path is not None and path.is_dir() and (path / METADATA).is_file()
    except OSError:  # an unreadable folder: the built-in formats say why
        return None
    return DcpReader(source, path) if is_dcp and path is not None else None


class DcpReader(CheckpointReader):
    """One ``torch.distributed.checkpoint`` folder."""

    format = "torch-dcp"

    def __init__(self, source: str, path: Path) -> None:
        super().__init__(source, path)
        require("torch", f"{path}: reading a torch.distributed.checkpoint folder")
        from torch.distributed.checkpoint.filesystem import FileSystemReader
        from torch.distributed.checkpoint.metadata import MetadataIndex, TensorStorageMetadata

        self._index = MetadataIndex
        try:
            metadata = FileSystemReader(str(path)).read_metadata()
        except Exception as exc:  # unpickling a corrupt or foreign file fails in many ways
            raise CheckpointError(
                f"{path / METADATA}: not readable torch.distributed.checkpoint metadata: {exc}"
            ) from None
        self._storage: Mapping[Any, Any] = metadata.storage_data
        self._entries: dict[str, Any] = {}
        self._tensors: dict[str, StoredTensor] = {}
        for name, entry in metadata.state_dict_metadata.items():
            if isinstance(entry, TensorStorageMetadata):  # not the pickled non-tensor values
                self._add(name, entry)

    def _add(self, name: str, entry: Any) -> None:
        from sparsecheck._dtypes import from_torch_dtype

        try:
            dtype = from_torch_dtype(entry.properties.dtype)
        except ValueError:
            raise CheckpointError(
                f"{self.path}: tensor {name!r}: unsupported dtype {entry.properties.dtype}"
            ) from None
        meta = TensorMeta(name, dtype, tuple(int(d) for d in entry.size))
        first = self._chunk_storage(name, entry.chunks[0]) if entry.chunks else None
        file = self.path / first.relative_path if first else self.path / METADATA
        offset = int(first.offset) if first else 0
        nbytes = sum(int(self._chunk_storage(name, chunk).length) for chunk in entry.chunks)
        self._entries[name] = entry
        self._tensors[name] = StoredTensor(meta, file, offset, nbytes)

    def _chunk_storage(self, name: str, chunk: Any) -> Any:
        info = self._storage.get(self._index(name, chunk.offsets))
        if info is None:
            raise CheckpointError(
                f"{self.path / METADATA}: tensor {name!r}: a chunk at {list(chunk.offsets)} has no storage"
            )
        if getattr(info, "transform_descriptors", None):
            raise CheckpointError(
                f"{self.path}: tensor {name!r} is stored with transforms "
                f"{info.transform_descriptors} (not supported)"
            )
        return info

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self._tensors

    def read(self, name: str) -> np.ndarray:
        import torch

        from sparsecheck._dtypes import STORAGE

        entry = self._entries[name]
        meta = self._tensors[name].meta
        whole = torch.empty(meta.shape, dtype=entry.properties.dtype)
        for chunk in entry.chunks:
            part = self._load_chunk(name, chunk)
            region = tuple(slice(o, o + s) for o, s in zip(chunk.offsets, chunk.sizes, strict=True))
            whole[region] = part
        if whole.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
            whole = whole.view(torch.uint16 if whole.element_size() == 2 else torch.uint8)
        array = whole.numpy().view(STORAGE[meta.dtype])
        array.flags.writeable = False
        return array

    def _load_chunk(self, name: str, chunk: Any) -> Any:
        import torch

        info = self._chunk_storage(name, chunk)
        file = self.path / info.relative_path
        try:
            with open(file, "rb") as handle:
                handle.seek(info.offset)
                blob = handle.read(info.length)
        except OSError as exc:
            raise CheckpointError(f"{file}: cannot read: {exc.strerror or exc}") from None
        if len(blob) != info.length:
            raise CheckpointError(f"{file}: tensor {name!r}: truncated ({len(blob)} of {info.length} bytes)")
        try:
            part = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
        except Exception as exc:
            raise CheckpointError(f"{file}: tensor {name!r}: not a readable chunk: {exc}") from None
        if not isinstance(part, torch.Tensor) or tuple(part.shape) != tuple(chunk.sizes):
            raise CheckpointError(
                f"{file}: tensor {name!r}: a chunk does not hold the {tuple(chunk.sizes)} it should"
            )
        return part

    def fingerprint(self) -> str:
        files = sorted(self.path.glob("*.distcp"))
        return sampled_fingerprint(self.path, {self.path / METADATA: None, **dict.fromkeys(files)})
