"""Checkpoints at fsspec URLs (``s3://``, ``gs://``, ``az://``, ``http(s)://``, ``hf://``, …),
read by range requests.

A URL names a ``.safetensors`` file, a ``model.safetensors.index.json``, or a folder in the
Hugging Face layout (``model.safetensors``, or the index and its shards).  Each file's header
is read with two range requests (its length, then the header); a tensor is fetched by a range
request for its bytes alone (16 MiB parts for a larger one), only when the pass reads it, and
ahead of the pass in threads (:mod:`sparsecheck.checkpoints._readahead`).  Nothing is
downloaded whole.

fsspec is imported only when a URL is opened (the optional ``remote`` extra; ``s3fs``,
``gcsfs``, ``adlfs`` or ``huggingface_hub`` for their schemes).  Credentials come from where
each filesystem looks for them (``AWS_*`` variables and ``~/.aws``, ``HF_TOKEN``, …); they
are never printed: a URL's ``user:password@`` is cut from every message.  The fingerprint
takes each file's size and ETag (sampled blocks, as for local files, where a server sends no
ETag).  Any failure to reach or read an object is one :class:`CheckpointError` line (exit 4).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck._dtypes import STORAGE
from sparsecheck._extras import require
from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._fingerprint import sampled_ranges
from sparsecheck.checkpoints._formats import SAFETENSORS_FILE, SAFETENSORS_INDEX
from sparsecheck.checkpoints._readahead import ReadAhead
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor
from sparsecheck.checkpoints._safetensors import SafetensorsFile
from sparsecheck.errors import CheckpointError

URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://.+")
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
#: A tensor larger than this is fetched in parts of this size (bounded request size).
PART_BYTES = 16 << 20


@hookimpl
def sparsecheck_open_checkpoint(source: str, path: Path | None) -> CheckpointReader | None:
    if path is not None or not URL.fullmatch(source):
        return None
    return open_url(source)


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` of any URL in it removed."""
    return _USERINFO.sub("", text)


def open_url(source: str) -> RemoteReader:
    """Open the checkpoint at the fsspec URL ``source``."""
    shown = redact(source)
    fsspec = require("fsspec", f"{shown}: reading a URL")
    try:
        fs, root = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as exc:  # an unknown scheme, or its filesystem not installed
        raise CheckpointError(f"{shown}: {_reason(exc)}") from None
    store = _Store(fs, shown)
    root = root.rstrip("/")
    if root.endswith(".safetensors"):
        return RemoteReader(source, store, [root], "safetensors")
    if root.endswith(".safetensors.index.json"):
        folder = root.rsplit("/", 1)[0]
        return _sharded(source, store, folder, root)
    listed = store.listing(root)
    if _join(root, SAFETENSORS_FILE) in listed or store.exists(_join(root, SAFETENSORS_FILE), listed):
        return RemoteReader(source, store, [_join(root, SAFETENSORS_FILE)], "safetensors")
    if store.exists(_join(root, SAFETENSORS_INDEX), listed):
        return _sharded(source, store, root, _join(root, SAFETENSORS_INDEX))
    raise CheckpointError(f"{shown}: no {SAFETENSORS_FILE} or {SAFETENSORS_INDEX} there")


def _sharded(source: str, store: _Store, folder: str, index: str) -> RemoteReader:
    try:
        weight_map = json.loads(store.fetch(index, 0, store.size(index)))["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        raise CheckpointError(
            f'{store.url(index)}: no "weight_map" object of tensor names to shard files'
        ) from None
    shards = sorted(set(map(str, weight_map.values())))
    reader = RemoteReader(source, store, [_join(folder, shard) for shard in shards], "safetensors-sharded")
    for name, shard in weight_map.items():
        stored = reader.tensors().get(name)
        if stored is None or stored.file.name != shard:
            reader.close()
            raise CheckpointError(
                f"{store.url(index)}: tensor {name!r} is listed in shard {shard!r} but is not stored there"
            )
    return reader


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


NOT_FOUND = "not found"


def _explain(exc: BaseException) -> str:
    """What went wrong reaching an object, in a few words: fsspec filesystems wrap their
    transport's errors (an HTTP status, a refused connection) in OSErrors of their own."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 8:
        chain.append(chain[-1].__cause__)
    for link in chain:
        status = getattr(link, "status", None)
        if isinstance(status, int) and status >= 400:
            return _STATUS.get(status, f"cannot read: HTTP {status}: {_reason(link)}")
        if any(word in type(link).__name__ for word in ("Payload", "ContentLength", "IncompleteRead")):
            return f"truncated response: {_reason(link)}"
    if isinstance(exc, PermissionError):
        return f"access denied: {_reason(exc)}"
    if isinstance(exc, FileNotFoundError) and len(chain) == 1:
        return NOT_FOUND
    return f"cannot read: {_reason(chain[-1])}"


_STATUS = {401: "access denied: HTTP 401 (no credentials?)", 403: "access denied: HTTP 403", 404: NOT_FOUND}


def _reason(exc: BaseException) -> str:
    text = redact(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Store:
    """One fsspec filesystem, its calls turned into one-line :class:`CheckpointError`s."""

    def __init__(self, fs: Any, shown: str) -> None:
        self.fs = fs
        self.shown = shown
        self._info: dict[str, dict[str, Any]] = {}

    def url(self, path: str) -> str:
        return redact(self.fs.unstrip_protocol(path))

    def _error(self, path: str, exc: BaseException) -> CheckpointError:
        return CheckpointError(f"{self.url(path)}: {_explain(exc)}")

    def listing(self, folder: str) -> set[str]:
        """The files directly in ``folder`` (their info kept); empty where it cannot be listed."""
        try:
            entries = self.fs.ls(folder, detail=True)
        except Exception:  # not listable (plain HTTP servers), or no such folder: probed by name
            return set()
        for entry in entries:
            self._info[entry["name"].rstrip("/")] = entry
        return set(self._info)

    def exists(self, path: str, listed: set[str]) -> bool:
        if listed:
            return path in listed
        try:
            self._info[path] = self.fs.info(path)
        except Exception as exc:
            if _explain(exc) == NOT_FOUND:
                return False
            raise self._error(path, exc) from None
        return True

    def info(self, path: str) -> dict[str, Any]:
        if path not in self._info:
            try:
                self._info[path] = self.fs.info(path)
            except Exception as exc:
                raise self._error(path, exc) from None
        return self._info[path]

    def size(self, path: str) -> int:
        size = self.info(path).get("size")
        if not isinstance(size, int):
            raise CheckpointError(f"{self.url(path)}: the server does not say the object's size")
        return size

    def etag(self, path: str) -> str | None:
        info = self.info(path)
        lfs = info.get("lfs")
        tag = info.get("ETag") or info.get("etag") or (lfs.get("sha256") if isinstance(lfs, dict) else None)
        return str(tag) if tag else None

    def fetch(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``path``, all of them or an error."""
        try:
            data = self.fs.cat_file(path, start=start, end=end) if end > start else b""
        except Exception as exc:
            raise self._error(path, exc) from None
        if len(data) != end - start:
            raise CheckpointError(
                f"{self.url(path)}: truncated response: {len(data)} of {end - start} bytes at offset {start}"
            )
        return bytes(data)


class _RemoteFile(SafetensorsFile):
    """A safetensors file at a URL: its header fetched by range reads, its tensors on demand."""

    def __init__(self, store: _Store, path: str) -> None:
        self.store = store
        self.path = path
        self.file = Path(path)
        size = store.size(path)
        header_length = self._header_length(store.fetch(path, 0, min(8, size)), size)
        self.data_start = 8 + header_length
        self.tensors = self._parse(store.fetch(path, 8, self.data_start), size - self.data_start)

    def _corrupt(self, detail: str) -> CheckpointError:
        return CheckpointError(f"{self.store.url(self.path)}: corrupt safetensors file: {detail}")

    def fetch(self, name: str) -> np.ndarray:
        stored = self.tensors[name]
        out = np.empty(stored.nbytes, np.uint8)
        starts = range(stored.offset, stored.offset + stored.nbytes, PART_BYTES)
        for start in starts:  # a large tensor in parts (the read-ahead overlaps tensors, not parts)
            end = min(start + PART_BYTES, stored.offset + stored.nbytes)
            out[start - stored.offset : end - stored.offset] = np.frombuffer(
                self.store.fetch(self.path, start, end), np.uint8
            )
        out.flags.writeable = False
        return out.view(STORAGE[stored.meta.dtype]).reshape(stored.meta.shape)

    def array(self, name: str) -> np.ndarray:
        return self.fetch(name)

    def release(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass


class RemoteReader(CheckpointReader):
    """A safetensors checkpoint (one file or shards) at a URL."""

    remote = True

    def __init__(self, source: str, store: _Store, files: Sequence[str], format: str) -> None:
        shown = Path(redact(files[0]))
        super().__init__(redact(source), shown.parent if len(files) > 1 else shown)
        self.format = format
        self._store = store
        self._files = [_RemoteFile(store, file) for file in files]
        self._owner: dict[str, _RemoteFile] = {}
        self._tensors: dict[str, StoredTensor] = {}
        for shard in self._files:
            for name, stored in shard.tensors.items():
                if name in self._owner:
                    raise CheckpointError(
                        f"{store.url(shard.path)}: tensor {name!r} "
                        f"is also stored in {self._owner[name].file.name}"
                    )
                self._owner[name] = shard
                self._tensors[name] = stored
        self._ahead: ReadAhead | None = None
        self._ahead_pid = 0

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self._tensors

    def will_read(self, names: Sequence[str]) -> None:
        self.close()
        nbytes = {name: self._tensors[name].nbytes for name in names}
        self._ahead = ReadAhead(names, nbytes, self._fetch)
        self._ahead_pid = os.getpid()

    def _fetch(self, name: str) -> np.ndarray:
        return self._owner[name].fetch(name)

    def read(self, name: str) -> np.ndarray:
        if self._ahead is not None and self._ahead_pid == os.getpid():
            return self._ahead.take(name)
        return self._fetch(name)

    def release(self, name: str) -> None:
        if self._ahead is not None and self._ahead_pid == os.getpid():
            self._ahead.drop(name)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        root = os.path.commonpath([shard.path for shard in self._files]) if len(self._files) > 1 else ""
        for shard in sorted(self._files, key=lambda f: f.path):
            size, tag = self._store.size(shard.path), self._store.etag(shard.path)
            relative = shard.path[len(root) :].lstrip("/") if root else shard.file.name
            digest.update(f"{relative}\0{size}\0".encode())
            if tag:
                digest.update(f"etag\0{tag}".encode())
                continue
            for start, end in sampled_ranges(size, shard.data_start):
                digest.update(self._store.fetch(shard.path, start, end))
        return digest.hexdigest()[:16]

    def close(self) -> None:
        if self._ahead is not None and self._ahead_pid == os.getpid():
            self._ahead.close()
        self._ahead = None
