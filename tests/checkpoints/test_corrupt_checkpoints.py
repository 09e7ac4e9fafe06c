"""Broken checkpoints end in one CheckpointError line naming the file (and tensor)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch

from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.errors import CheckpointError
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

Opener = Callable[[Path | str], CheckpointReader]


class NotATensor:
    """A custom class: ``torch.load(weights_only=True)`` must refuse to unpickle it."""

    def __init__(self) -> None:
        self.payload = 42


def _error(open_ckpt: Opener, source: Path | str) -> str:
    with pytest.raises(CheckpointError) as info:
        open_ckpt(source)
    message = str(info.value)
    assert "\n" not in message
    return message


def _safetensors_file(path: Path, header: Mapping[str, object], data: bytes) -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


def test_truncated_safetensors(tmp_path: Path, open_ckpt: Opener) -> None:
    file = write_checkpoint(tmp_path / "t.safetensors", {"a": torch.ones(4), "b": torch.ones(256)}, "file")
    file.write_bytes(file.read_bytes()[:-100])
    message = _error(open_ckpt, file)
    assert str(file) in message
    assert "'b'" in message and "truncated" in message


def test_truncated_inside_header(tmp_path: Path, open_ckpt: Opener) -> None:
    file = write_checkpoint(tmp_path / "t.safetensors", {"a": torch.ones(4)}, "file")
    file.write_bytes(file.read_bytes()[:20])
    message = _error(open_ckpt, file)
    assert str(file) in message and "header length" in message


def test_garbage_header(tmp_path: Path, open_ckpt: Opener) -> None:
    file = tmp_path / "g.safetensors"
    file.write_bytes(struct.pack("<Q", 16) + b"\xff\xfe not json!!!" + b"\0" * 64)
    message = _error(open_ckpt, file)
    assert str(file) in message and "not valid JSON" in message


def test_header_length_beyond_file(tmp_path: Path, open_ckpt: Opener) -> None:
    file = tmp_path / "h.safetensors"
    file.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    message = _error(open_ckpt, file)
    assert str(file) in message and "1000000000" in message


def test_too_short_file(tmp_path: Path, open_ckpt: Opener) -> None:
    file = tmp_path / "s.safetensors"
    file.write_bytes(b"abc")
    assert "too short" in _error(open_ckpt, file)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]},
            "20 bytes stored, but F32 (2, 3) needs 24",
        ),
        ({"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}, "unsupported dtype 'Q4'"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}, "bad shape"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}, "bad data_offsets"),
        ("not an object", "not an object"),
    ],
)
def test_bad_header_entries(tmp_path: Path, open_ckpt: Opener, entry: object, expected: str) -> None:
    file = _safetensors_file(tmp_path / "e.safetensors", {"w": entry}, b"\0" * 32)
    message = _error(open_ckpt, file)
    assert str(file) in message and "'w'" in message and expected in message


def test_overlapping_tensors(tmp_path: Path, open_ckpt: Opener) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    file = _safetensors_file(tmp_path / "o.safetensors", header, b"\0" * 24)
    assert "tensors 'a' and 'b' overlap" in _error(open_ckpt, file)


def test_index_naming_a_missing_shard(tmp_path: Path, open_ckpt: Opener) -> None:
    folder = write_checkpoint(tmp_path / "c", tiny_llama_state_dict(layers=2), "sharded", shards=3)
    (folder / "model-00002-of-00003.safetensors").unlink()
    message = _error(open_ckpt, folder)
    assert str(folder / "model.safetensors.index.json") in message
    assert "model-00002-of-00003.safetensors" in message


def test_tensor_missing_from_its_shard(tmp_path: Path, open_ckpt: Opener) -> None:
    folder = write_checkpoint(tmp_path / "c", tiny_llama_state_dict(layers=1), "sharded")
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    index["weight_map"]["model.layers.0.mlp.extra.weight"] = "model-00001-of-00002.safetensors"
    index_file.write_text(json.dumps(index))
    message = _error(open_ckpt, folder)
    assert str(index_file) in message
    assert "'model.layers.0.mlp.extra.weight'" in message and "model-00001-of-00002.safetensors" in message


def test_tensor_in_another_shard_than_listed(tmp_path: Path, open_ckpt: Opener) -> None:
    folder = write_checkpoint(tmp_path / "c", tiny_llama_state_dict(layers=1), "bin-sharded")
    index_file = folder / "pytorch_model.bin.index.json"
    index = json.loads(index_file.read_text())
    index["weight_map"]["lm_head.weight"] = "pytorch_model-00001-of-00002.bin"
    index_file.write_text(json.dumps(index))
    message = _error(open_ckpt, folder)
    assert "'lm_head.weight'" in message and "stored in 'pytorch_model-00002-of-00002.bin'" in message


def test_index_that_is_not_json(tmp_path: Path, open_ckpt: Opener) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text("{weight_map: oops")
    message = _error(open_ckpt, folder)
    assert str(folder / "model.safetensors.index.json") in message and "not valid JSON" in message


def test_index_without_weight_map(tmp_path: Path, open_ckpt: Opener) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')
    assert "weight_map" in _error(open_ckpt, folder)


def test_tensor_stored_in_two_shards(tmp_path: Path, open_ckpt: Opener) -> None:
    folder = tmp_path / "c"
    write_checkpoint(folder / "a.safetensors", {"w": torch.ones(2)}, "file")
    write_checkpoint(folder / "b.safetensors", {"w": torch.zeros(2)}, "file")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "a.safetensors", "x": "b.safetensors"}})
    )
    message = _error(open_ckpt, folder)
    assert "'w' is also stored in a.safetensors" in message


def test_bin_with_a_custom_class_is_refused(tmp_path: Path, open_ckpt: Opener) -> None:
    file = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.ones(2), "extra": NotATensor()}, file)
    message = _error(open_ckpt, file)
    assert str(file) in message
    assert "not a plain tensor state dict" in message and "NotATensor" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([torch.ones(2)], "it holds a list"),
        ({"model": {"w": torch.ones(2)}, "step": 3}, "'model' holds a dict"),
    ],
)
def test_bin_that_is_not_a_flat_state_dict(
    tmp_path: Path, open_ckpt: Opener, content: object, expected: str
) -> None:
    file = tmp_path / "c.pt"
    torch.save(content, file)
    message = _error(open_ckpt, file)
    assert str(file) in message and expected in message


def test_truncated_bin(tmp_path: Path, open_ckpt: Opener) -> None:
    file = tmp_path / "c.bin"
    torch.save(tiny_llama_state_dict(layers=1), file)
    file.write_bytes(file.read_bytes()[:1000])
    message = _error(open_ckpt, file)
    assert str(file) in message and "unreadable torch checkpoint" in message
