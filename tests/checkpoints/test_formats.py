"""Every checkpoint layout reads back bit-identical tensors, zero-copy and read-only."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sparsecheck._dtypes import STORAGE
from sparsecheck.checkpoints._open import open_checkpoint
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.errors import CheckpointError
from sparsecheck.testing import Layout, tiny_llama_state_dict, write_checkpoint

Opener = Callable[[Path | str], CheckpointReader]
FORMATS = {
    "file": "safetensors",
    "dir": "safetensors",
    "sharded": "safetensors-sharded",
    "bin": "torch",
    "bin-sharded": "torch-sharded",
}
DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


def _target(tmp_path: Path, layout: str) -> Path:
    return tmp_path / ("ckpt.safetensors" if layout == "file" else "ckpt")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", list(FORMATS))
def test_every_layout_reads_back_bit_identical(
    tmp_path: Path, open_ckpt: Opener, stored_array: Any, layout: Layout, dtype: torch.dtype
) -> None:
    state = tiny_llama_state_dict(dtype=dtype, seed=3)
    path = write_checkpoint(_target(tmp_path, layout), state, layout, shards=3)
    reader = open_ckpt(path)

    assert reader.format == FORMATS[layout]
    assert reader.path == path.resolve()
    assert set(reader.tensors()) == set(state)
    dtype_name = str(dtype).removeprefix("torch.")
    for name, tensor in state.items():
        stored = reader.tensors()[name]
        assert (stored.meta.name, stored.meta.dtype, stored.meta.shape) == (
            name,
            dtype_name,
            tuple(tensor.shape),
        )
        assert stored.nbytes == tensor.numel() * tensor.element_size()
        array = reader.read(name)
        assert array.dtype == STORAGE[dtype_name]
        assert array.shape == tuple(tensor.shape)
        np.testing.assert_array_equal(array, stored_array(tensor))
        assert not array.flags.writeable
        assert not array.flags.owndata  # a view of the file, not a copy


@pytest.mark.parametrize(
    "dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool]
)
def test_integer_and_bool_tensors(tmp_path: Path, open_ckpt: Opener, dtype: torch.dtype) -> None:
    values = torch.arange(-6, 6).reshape(3, 4) % 5
    state = {"x": values.to(dtype), "empty": torch.zeros(0, 3, dtype=dtype)}
    reader = open_ckpt(write_checkpoint(tmp_path / "c.safetensors", state, "file"))
    for name, tensor in state.items():
        assert reader.tensors()[name].meta.dtype == str(dtype).removeprefix("torch.")
        np.testing.assert_array_equal(reader.read(name), tensor.numpy())


def test_float8_tensors(tmp_path: Path, open_ckpt: Opener, stored_array: Any) -> None:
    state = {"a": torch.randn(8, 4).to(torch.float8_e4m3fn), "b": torch.randn(5).to(torch.float8_e5m2)}
    reader = open_ckpt(write_checkpoint(tmp_path / "f8", state, "dir"))
    assert {n: t.meta.dtype for n, t in reader.tensors().items()} == {
        "a": "float8_e4m3fn",
        "b": "float8_e5m2",
    }
    for name, tensor in state.items():
        np.testing.assert_array_equal(reader.read(name), stored_array(tensor))


def test_bin_with_views_reads_their_values(tmp_path: Path, open_ckpt: Opener) -> None:
    whole = torch.randn(6, 4)
    state = {"transposed": whole.t(), "slice": whole[2:4], "other": torch.randn(3)}
    torch.save(state, tmp_path / "views.pt")
    reader = open_ckpt(tmp_path / "views.pt")
    assert reader.format == "torch"
    assert reader.aliases() == {}
    for name, tensor in state.items():
        np.testing.assert_array_equal(reader.read(name), tensor.numpy())


def test_folder_with_both_prefers_safetensors(tmp_path: Path, open_ckpt: Opener) -> None:
    state = tiny_llama_state_dict(layers=1)
    write_checkpoint(tmp_path / "both", state, "dir")
    write_checkpoint(tmp_path / "both", state, "bin")
    assert open_ckpt(tmp_path / "both").format == "safetensors"
    (tmp_path / "both" / "model.safetensors").unlink()
    assert open_ckpt(tmp_path / "both").format == "torch"


@pytest.mark.parametrize(
    ("layout", "index"),
    [("sharded", "model.safetensors.index.json"), ("bin-sharded", "pytorch_model.bin.index.json")],
)
def test_index_file_opens_its_shards(tmp_path: Path, open_ckpt: Opener, layout: Layout, index: str) -> None:
    state = tiny_llama_state_dict(layers=1)
    folder = write_checkpoint(tmp_path / "c", state, layout, shards=2)
    reader = open_ckpt(folder / index)
    assert reader.format == FORMATS[layout]
    assert reader.path == folder.resolve()
    assert set(reader.tensors()) == set(state)
    assert len({t.file for t in reader.tensors().values()}) == 2


def test_not_a_checkpoint(tmp_path: Path, open_ckpt: Opener) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: no model\.safetensors, .*pytorch_model\.bin"):
        open_ckpt(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt: not a checkpoint"):
        open_ckpt(tmp_path / "notes.txt")


def test_missing_path_and_not_a_hub_id(tmp_path: Path, open_ckpt: Opener) -> None:
    with pytest.raises(CheckpointError, match=r"^nowhere: no such file or folder .*not a hub id"):
        open_ckpt("nowhere")


@pytest.mark.parametrize("source", ["./checkpoints/sft", "../sft", "~/nowhere-sparsecheck", "a/b/c"])
def test_a_missing_explicit_path_says_nothing_of_the_hub(source: str, open_ckpt: Opener) -> None:
    with pytest.raises(CheckpointError, match=r"no such file or folder \(looked for [^)]*\)$"):
        open_ckpt(source)


def test_relative_paths_resolve_against_base_dir(tmp_path: Path, hook: Any) -> None:
    write_checkpoint(tmp_path / "specs" / "ckpt" / "sft", tiny_llama_state_dict(layers=1), "dir")
    reader = open_checkpoint(hook, "ckpt/sft", tmp_path / "specs")
    assert reader.path == (tmp_path / "specs" / "ckpt" / "sft").resolve()
    assert reader.source == "ckpt/sft"
    reader.close()


def test_home_is_expanded(tmp_path: Path, hook: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_checkpoint(tmp_path / "sft.safetensors", {"w": torch.ones(2)}, "file")
    reader = open_checkpoint(hook, "~/sft.safetensors", tmp_path / "elsewhere")
    assert reader.path == (tmp_path / "sft.safetensors").resolve()
    reader.close()


@pytest.mark.parametrize("layout", list(FORMATS))
def test_release_keeps_later_reads_correct(
    tmp_path: Path, open_ckpt: Opener, stored_array: Any, layout: Layout
) -> None:
    state = tiny_llama_state_dict(layers=2, hidden=64, intermediate=128, dtype=torch.bfloat16)
    reader = open_ckpt(write_checkpoint(_target(tmp_path, layout), state, layout))
    names = list(state)
    held = reader.read(names[0])
    for name in names:
        np.testing.assert_array_equal(reader.read(name), stored_array(state[name]))
        reader.release(name)
    for name in reversed(names):  # re-reads after release, and an array held across releases
        np.testing.assert_array_equal(reader.read(name), stored_array(state[name]))
        reader.release(name)
    np.testing.assert_array_equal(held, stored_array(state[names[0]]))


def test_reader_never_writes_into_the_checkpoint(tmp_path: Path, open_ckpt: Opener) -> None:
    folder = write_checkpoint(tmp_path / "c", tiny_llama_state_dict(layers=1), "sharded")
    snapshot = tmp_path / "copy"
    shutil.copytree(folder, snapshot)
    reader = open_ckpt(folder)
    for name in reader.tensors():
        reader.read(name)
        reader.release(name)
    reader.fingerprint()
    reader.close()
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in snapshot.iterdir())
    for file in folder.iterdir():
        assert file.read_bytes() == (snapshot / file.name).read_bytes()


def test_legacy_torch_format_is_read_without_a_map(
    tmp_path: Path, open_ckpt: Opener, stored_array: Any
) -> None:
    state = tiny_llama_state_dict(layers=1, dtype=torch.bfloat16)
    torch.save(state, tmp_path / "old.bin", _use_new_zipfile_serialization=False)
    reader = open_ckpt(tmp_path / "old.bin")
    for name, tensor in state.items():
        np.testing.assert_array_equal(reader.read(name), stored_array(tensor))
        reader.release(name)
        np.testing.assert_array_equal(reader.read(name), stored_array(tensor))
