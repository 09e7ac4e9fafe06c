"""A PEFT LoRA adapter over its base: the tuned checkpoint ``base + ΔW``, read with numpy.

An adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors``.  For each
target module the file stores ``lora_A`` (r × in) and ``lora_B`` (out × r); the module's
weight moves by ΔW = B @ A · scale, scale = ``lora_alpha`` / r (/ √r with ``use_rslora``),
``rank_pattern``/``alpha_pattern`` overriding r and alpha per module, transposed for
``fan_in_fan_out`` (Conv1D) layers; an embedding's ``lora_embedding_A``/``_B`` give
ΔW = (B @ A)ᵀ · scale.  ΔW is formed one tensor at a time, when the pass reads it; a moved
weight reads as float32 (float64 over a float64 base), base + ΔW exactly as that dtype adds
them, so every metric sees the update the adapter applies before any rounding to the base's
dtype.  Tensors no module targets read as the base's.  The peft package is not needed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck._dtypes import widen
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor, TensorMeta
from sparsecheck.checkpoints._safetensors import SafetensorsReader
from sparsecheck.errors import CheckpointError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_PAIRS = {"lora_A": "lora_B", "lora_embedding_A": "lora_embedding_B"}
_BASE_LAYER = ".base_layer.weight"
#: Config options this reader does not apply: an adapter using them is refused, not misread.
_UNSUPPORTED = ("use_dora", "layer_replication")


def is_adapter(path: Path) -> bool:
    """Whether ``path`` is a PEFT adapter folder (False when that cannot be told: opening the
    path as a checkpoint then says why)."""
    try:
        return (path / CONFIG).is_file()
    except OSError:
        return False


def open_adapter(source: str, base_dir: Path, base: CheckpointReader) -> AdapterReader:
    """The adapter folder ``source`` (relative: to ``base_dir``) applied to ``base``."""
    path = Path(source).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not is_adapter(path):
        raise CheckpointError(f"{path}: not a PEFT adapter folder (no {CONFIG})")
    return AdapterReader(source, path, base)


@dataclass(frozen=True)
class _Update:
    """One moved weight: its A and B tensors in the adapter file and the scale."""

    a: str
    b: str
    scale: float
    #: ΔW is (B @ A)ᵀ: an embedding, or a Conv1D (``fan_in_fan_out``) layer.
    transpose: bool
    #: The adapter's own copy of the weight to move (``base_layer.weight``, saved with an
    #: embedding's adapter), or None: the base's.
    start: str | None


class AdapterReader(CheckpointReader):
    """``base`` moved by the LoRA adapter in the folder ``path``."""

    format = "peft-lora"

    def __init__(self, source: str, path: Path, base: CheckpointReader) -> None:
        super().__init__(source, path)
        self.base = base
        config = _config(path / CONFIG)
        self._file = SafetensorsReader(source, path, [path / WEIGHTS], "safetensors")
        try:
            self._updates = self._plan(config)
        except BaseException:
            self._file.close()
            raise
        self._tensors = dict(base.tensors())
        for name in self._updates:
            stored = self._tensors[name]
            wide = "float64" if stored.meta.dtype == "float64" else "float32"
            meta = TensorMeta(name, wide, stored.meta.shape)
            self._tensors[name] = replace(stored, meta=meta, nbytes=meta.numel * np.dtype(wide).itemsize)

    def _plan(self, config: Mapping[str, Any]) -> dict[str, _Update]:
        """Base weight name → its update, checked against the base's names and shapes."""
        stored = self._file.tensors()
        updates: dict[str, _Update] = {}
        for key in stored:
            module, _, kind = key.removeprefix(_PREFIX).removesuffix(".weight").rpartition(".")
            if kind in _PAIRS.values() or key.endswith(_BASE_LAYER):
                continue
            if kind not in _PAIRS:
                raise CheckpointError(f"{self.path / WEIGHTS}: tensor {key!r} is not a LoRA A or B weight")
            b_key = key.replace(f".{kind}", f".{_PAIRS[kind]}")
            if b_key not in stored:
                raise CheckpointError(f"{self.path / WEIGHTS}: tensor {key!r} has no {_PAIRS[kind]} partner")
            rank = _pattern(config, "rank_pattern", module, int(config.get("r", 8)))
            alpha = _pattern(config, "alpha_pattern", module, float(config.get("lora_alpha", 8)))
            scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
            transpose = kind == "lora_embedding_A" or bool(config.get("fan_in_fan_out"))
            start = key.removesuffix(".weight").rsplit(".", 1)[0] + _BASE_LAYER
            updates[f"{module}.weight"] = _Update(
                key, b_key, scale, transpose, start if start in stored else None
            )
            self._check(f"{module}.weight", updates[f"{module}.weight"])
        return updates

    def _check(self, target: str, update: _Update) -> None:
        """The base has ``target``, and B @ A has its shape."""
        file = self.path / WEIGHTS
        base = self.base.tensors().get(target)
        if base is None:
            raise CheckpointError(
                f"{file}: tensor {update.a!r} targets {target!r}, "
                f"which the base {self.base.source} does not have"
            )
        a, b = (self._file.tensors()[key].meta.shape for key in (update.a, update.b))
        if update.start is not None and self._file.tensors()[update.start].meta.shape != base.meta.shape:
            raise CheckpointError(
                f"{file}: {update.start} {self._file.tensors()[update.start].meta.shape} does not have the "
                f"shape of the base's {target!r} {base.meta.shape} (a resized vocabulary is not supported)"
            )
        product = (b[0], a[1]) if len(a) == len(b) == 2 and a[0] == b[1] else None
        if product is not None and update.transpose:
            product = product[::-1]
        if product != base.meta.shape:
            raise CheckpointError(
                f"{file}: {update.a} {a} and {update.b} {b} "
                f"do not make a {base.meta.shape} update of {target!r}"
            )

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self._tensors

    def aliases(self) -> Mapping[str, str]:
        return self.base.aliases()

    def delta(self, name: str) -> np.ndarray:
        """ΔW of the weight ``name`` (float32), or zeros where no module targets it."""
        shape = self._tensors[name].meta.shape
        update = self._updates.get(name)
        if update is None:
            return np.zeros(shape, np.float32)
        a, b = (self._widened(key) for key in (update.a, update.b))
        delta = (b @ a) * np.float32(update.scale)
        return np.ascontiguousarray(delta.T) if update.transpose else delta

    def _widened(self, key: str) -> np.ndarray:
        meta = self._file.tensors()[key].meta
        return widen(self._file.read(key), meta.dtype, np.dtype(np.float32)).astype(np.float32, copy=False)

    def read(self, name: str) -> np.ndarray:
        target = self.base.aliases().get(name, name)
        update = self._updates.get(target)
        if update is None:
            return self.base.read(name)
        source, key = (self._file, update.start) if update.start else (self.base, target)
        stored = source.tensors()[key].meta
        wide = self._tensors[target].meta.dtype
        moved = widen(source.read(key), stored.dtype, np.dtype(wide)).astype(wide, copy=True)
        moved += self.delta(target)
        moved.flags.writeable = False
        return moved

    def release(self, name: str) -> None:
        self.base.release(name)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.base.fingerprint().encode())
        digest.update((self.path / CONFIG).read_bytes())
        digest.update(self._file.fingerprint().encode())
        return digest.hexdigest()[:16]

    def close(self) -> None:
        self._file.close()  # the base is the planner's: it closes it


def _config(file: Path) -> dict[str, Any]:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CheckpointError(f"{file}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: not a JSON object")
    if config.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{file}: peft_type {config['peft_type']!r}: only LORA adapters are read")
    for option in _UNSUPPORTED:
        if config.get(option):
            raise CheckpointError(f"{file}: {option} is not supported (only plain LoRA: B @ A · alpha / r)")
    if not (file.parent / WEIGHTS).is_file():
        raise CheckpointError(f"{file.parent}: no {WEIGHTS} beside {CONFIG}")
    return config


def _pattern(config: Mapping[str, Any], key: str, module: str, default: float) -> Any:
    """A per-module override from ``rank_pattern``/``alpha_pattern`` (keys match a module
    name's end, or as a glob), else ``default``."""
    for pattern, value in (config.get(key) or {}).items():
        if module == pattern or module.endswith(f".{pattern}") or fnmatchcase(module, pattern):
            return value
    return default
