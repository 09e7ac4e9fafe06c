"""The sampled fingerprint: equal for copies, different when a header, size or name changes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.testing import Layout, tiny_llama_state_dict, write_checkpoint

Opener = Callable[[Path | str], CheckpointReader]
LAYOUTS: list[Layout] = ["file", "dir", "sharded", "bin", "bin-sharded"]


def _write(folder: Path, layout: Layout, state: dict[str, torch.Tensor]) -> Path:
    return write_checkpoint(folder / ("c.safetensors" if layout == "file" else "c"), state, layout)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_copies_fingerprint_equal(tmp_path: Path, open_ckpt: Opener, layout: Layout) -> None:
    original = _write(tmp_path / "one", layout, tiny_llama_state_dict(hidden=64, intermediate=256))
    copy = tmp_path / "two" / original.name
    copy.parent.mkdir()
    (shutil.copytree if original.is_dir() else shutil.copyfile)(original, copy)
    first = open_ckpt(original).fingerprint()
    assert len(first) == 16 and int(first, 16) >= 0
    assert open_ckpt(copy).fingerprint() == first


@pytest.mark.parametrize("layout", LAYOUTS)
def test_header_and_size_changes_change_the_fingerprint(
    tmp_path: Path, open_ckpt: Opener, layout: Layout
) -> None:
    state = tiny_llama_state_dict(hidden=64, intermediate=256)
    renamed = {("model.final_norm.weight" if n == "model.norm.weight" else n): t for n, t in state.items()}
    grown = {**state, "extra.bias": torch.zeros(3)}
    prints = {
        open_ckpt(_write(tmp_path / label, layout, variant)).fingerprint()
        for label, variant in [("base", state), ("renamed", renamed), ("grown", grown)]
    }
    assert len(prints) == 3


def test_small_files_are_hashed_in_full(tmp_path: Path, open_ckpt: Opener) -> None:
    """Data under 16 blocks of 4 KiB is hashed whole, so any changed value shows."""
    state = {"w": torch.zeros(1000), "v": torch.ones(500)}
    changed = {"w": state["w"].clone(), "v": state["v"]}
    changed["w"][777] = 1e-30
    a = open_ckpt(write_checkpoint(tmp_path / "a", state, "dir")).fingerprint()
    b = open_ckpt(write_checkpoint(tmp_path / "b", changed, "dir")).fingerprint()
    assert a != b


def test_format_is_part_of_the_fingerprint(tmp_path: Path, open_ckpt: Opener) -> None:
    state = tiny_llama_state_dict()
    prints = {open_ckpt(_write(tmp_path / layout, layout, state)).fingerprint() for layout in LAYOUTS}
    assert len(prints) == len(LAYOUTS)
