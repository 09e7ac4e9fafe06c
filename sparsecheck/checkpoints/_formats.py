"""The built-in checkpoint formats: which reader opens a local file or folder.

A folder in the Hugging Face ``save_pretrained`` layout is recognised by its weights file, in
the order transformers looks for them: ``model.safetensors``, ``model.safetensors.index.json``
(shards), ``pytorch_model.bin``, ``pytorch_model.bin.index.json`` -- so safetensors wins when
a folder has both.  A single ``.safetensors`` file, a ``.bin``/``.pt``/``.pth`` state dict, or an
index file itself opens too.  Plugins that add formats implement the same hook with
``tryfirst=True``; this one runs last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from sparsecheck._extras import require
from sparsecheck._files import read_regular
from sparsecheck._json import JsonError, loads_strict
from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.checkpoints._safetensors import SafetensorsReader
from sparsecheck.errors import CheckpointError

ReaderFactory = Callable[[str, Path, Sequence[Path], str], CheckpointReader]

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
TORCH_SUFFIXES = (".bin", ".pt", ".pth")
#: The largest index file read (one of a 400B-parameter model is under 10 MB).
MAX_INDEX_BYTES = 100_000_000
#: The files that make a folder a checkpoint, in the order they are preferred.
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX)


def _torch_reader(source: str, path: Path, files: Sequence[Path], format: str) -> CheckpointReader:
    require("torch", f"{path}: reading a PyTorch checkpoint")
    from sparsecheck.checkpoints._torchbin import TorchReader

    return TorchReader(source, path, files, format)


@hookimpl(trylast=True)
def sparsecheck_open_checkpoint(source: str, path: Path | None) -> CheckpointReader | None:
    return None if path is None else open_local(source, path)


def open_local(source: str, path: Path) -> CheckpointReader:
    """Open the checkpoint at an existing local ``path``; ``source`` is what the user wrote.

    An OS error (permission denied, say) is a :class:`CheckpointError` naming the path.
    """
    try:
        return _open_local(source, path)
    except OSError as exc:
        raise CheckpointError(f"{exc.filename or path}: cannot read: {exc.strerror or exc}") from None


def _open_local(source: str, path: Path) -> CheckpointReader:
    if path.is_dir():
        return _open_folder(source, path)
    name = path.name
    if name.endswith(".safetensors.index.json"):
        return _open_sharded(source, path.parent, path, SafetensorsReader, "safetensors-sharded")
    if name.endswith(".bin.index.json"):
        return _open_sharded(source, path.parent, path, _torch_reader, "torch-sharded")
    if path.suffix == ".safetensors":
        return SafetensorsReader(source, path, [path], "safetensors")
    if path.suffix in TORCH_SUFFIXES:
        return _torch_reader(source, path, [path], "torch")
    raise CheckpointError(
        f"{path}: not a checkpoint: expected a folder, a .safetensors file or a .bin/.pt file"
    )


def _open_folder(source: str, folder: Path) -> CheckpointReader:
    if _present(folder / SAFETENSORS_FILE):
        return SafetensorsReader(source, folder, [folder / SAFETENSORS_FILE], "safetensors")
    if _present(folder / SAFETENSORS_INDEX):
        index = folder / SAFETENSORS_INDEX
        return _open_sharded(source, folder, index, SafetensorsReader, "safetensors-sharded")
    if _present(folder / TORCH_FILE):
        return _torch_reader(source, folder, [folder / TORCH_FILE], "torch")
    if _present(folder / TORCH_INDEX):
        return _open_sharded(source, folder, folder / TORCH_INDEX, _torch_reader, "torch-sharded")
    raise CheckpointError(
        f"{folder}: no {SAFETENSORS_FILE}, {SAFETENSORS_INDEX}, {TORCH_FILE} or {TORCH_INDEX} in this folder"
    )


def _present(path: Path) -> bool:
    """Whether ``path`` is there and not a folder (a FIFO is opened, and refused, by name)."""
    return path.exists() and not path.is_dir()


def _open_sharded(
    source: str, folder: Path, index: Path, factory: ReaderFactory, format: str
) -> CheckpointReader:
    weight_map = read_weight_map(index)
    shards = sorted(set(weight_map.values()))
    missing = [shard for shard in shards if not (folder / shard).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more missing shards)" if len(missing) > 1 else ""
        raise CheckpointError(f"{index}: names shard {missing[0]!r}, which does not exist{more}")
    reader = factory(source, folder, [folder / shard for shard in shards], format)
    try:
        _check_index(index, weight_map, reader, folder)
    except CheckpointError:
        reader.close()
        raise
    return reader


def read_weight_map(index: Path) -> dict[str, str]:
    """The ``weight_map`` of a sharded checkpoint's index: tensor name → shard file name."""
    try:
        data = loads_strict(read_regular(index, MAX_INDEX_BYTES))
    except OSError as exc:
        raise CheckpointError(f"{index}: cannot read: {exc.strerror or exc}") from None
    except JsonError as exc:
        raise CheckpointError(f"{index}: {exc}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CheckpointError(f'{index}: no "weight_map" object of tensor names to shard files')
    return weight_map


def _check_index(index: Path, weight_map: dict[str, str], reader: CheckpointReader, folder: Path) -> None:
    """Every tensor the index lists is stored in the shard it names."""
    stored, aliases = reader.tensors(), reader.aliases()
    for name, shard in weight_map.items():
        if name in aliases:  # a tied copy: compared as its target, wherever that is stored
            continue
        found = stored.get(name)
        if found is None:
            raise CheckpointError(
                f"{index}: tensor {name!r} is listed in shard {shard!r} but is not stored there"
            )
        if found.file != folder / shard:
            raise CheckpointError(
                f"{index}: tensor {name!r} is listed in shard {shard!r} but is stored in {found.file.name!r}"
            )
