"""Mask files: packed-bit round trip, metadata, and clear errors for files that are not masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecheck._manager import get_plugin_manager
from sparsecheck.checkpoints._open import open_checkpoint
from sparsecheck.errors import CheckpointError, UsageError
from sparsecheck.metrics._equality import EqualityPolicy
from sparsecheck.metrics._maskfile import FORMAT, MaskFile, MaskWriter, mask_metadata, popcount
from sparsecheck.testing import planted_pair, write_checkpoint

SHAPES = {"a.weight": (3, 5), "b.bias": (7,), "c.scalar": (), "d.empty": (0, 4), "e.cube": (2, 3, 11)}
METADATA = {"policy": "atol", "tol": "1e-05", "base_source": "base", "tuned_source": "tuned"}


def random_masks(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.random(shape) < 0.4 for name, shape in SHAPES.items()}


def write_masks(path: Path, masks: dict[str, np.ndarray], metadata: dict[str, str] = METADATA) -> Path:
    writer = MaskWriter(path, metadata)
    for name, mask in masks.items():
        writer.add(name, mask)
    writer.close()
    return path


def test_round_trip_keeps_masks_shapes_order_and_metadata(tmp_path: Path) -> None:
    masks = random_masks()
    path = write_masks(tmp_path / "run.mask.safetensors", masks)
    assert [p.name for p in tmp_path.iterdir()] == ["run.mask.safetensors"]  # no temporary left
    with MaskFile.open(path) as mask_file:
        assert mask_file.names() == list(SHAPES)
        for name, mask in masks.items():
            got = mask_file.read(name)
            assert got.dtype == np.bool_ and got.shape == SHAPES[name]
            assert np.array_equal(got, mask)
            assert mask_file.shape(name) == SHAPES[name]
            assert mask_file.count(name) == int(mask.sum())
            assert np.array_equal(mask_file.packed(name), np.packbits(mask.reshape(-1), bitorder="little"))
        assert {k: mask_file.metadata[k] for k in METADATA} == METADATA
        assert mask_file.metadata["format"] == FORMAT and mask_file.metadata["version"] == "1"
        assert json.loads(mask_file.metadata["shapes"]) == {n: list(s) for n, s in SHAPES.items()}
        assert mask_file.policy == EqualityPolicy("atol", 1e-5)


def test_packed_bits_are_little_endian_in_a_plain_safetensors_file(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    mask = np.zeros(11, dtype=bool)
    mask[[0, 3, 8, 10]] = True
    path = write_masks(tmp_path / "m.safetensors", {"w": mask})
    stored = load_file(str(path))["w"]
    assert stored.dtype == np.uint8
    assert stored.tolist() == [0b0000_1001, 0b0000_0101]


def test_count_ignores_padding_bits() -> None:
    packed = np.array([0xFF, 0xFF], dtype=np.uint8)  # 16 bits set, only 11 are entries
    assert popcount(packed, 11) == 11
    assert popcount(packed, 16) == 16
    assert popcount(np.array([0b1010_0110], dtype=np.uint8), 3) == 2


def test_writer_leaving_with_block_by_exception_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "never.safetensors"
    with pytest.raises(RuntimeError), MaskWriter(path, METADATA) as writer:
        writer.add("w", np.ones(3, dtype=bool))
        raise RuntimeError("interrupted")
    assert not path.exists()


def test_writer_rejects_non_bool_masks_and_duplicates(tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path / "m.safetensors", METADATA)
    with pytest.raises(TypeError, match="bool"):
        writer.add("w", np.ones(3, dtype=np.uint8))
    writer.add("w", np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="twice"):
        writer.add("w", np.ones(3, dtype=bool))


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"tol": "0"}, "policy None"),
        ({"policy": "close", "tol": "0"}, "'close'"),
        ({"policy": "atol"}, "tol"),
    ],
)
def test_writer_requires_policy_and_tol(tmp_path: Path, metadata: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MaskWriter(tmp_path / "m.safetensors", metadata)


def test_mask_metadata_names_policy_sources_fingerprints_and_dtypes(tmp_path: Path) -> None:
    pair = planted_pair(tmp_path, fraction=0.2)
    hook = get_plugin_manager().hook
    base = open_checkpoint(hook, str(pair.base), tmp_path)
    tuned = open_checkpoint(hook, str(pair.tuned), tmp_path)
    metadata = mask_metadata(EqualityPolicy("rtol", 1e-3), base, tuned)
    assert metadata["policy"] == "rtol" and float(metadata["tol"]) == 1e-3
    assert metadata["base_fingerprint"] == base.fingerprint() != metadata["tuned_fingerprint"]
    assert metadata["tuned_fingerprint"] == tuned.fingerprint()
    assert metadata["base_source"] == base.source and metadata["tuned_source"] == tuned.source
    assert metadata["base_dtypes"] == metadata["tuned_dtypes"] == "bfloat16"
    path = write_masks(tmp_path / "m.safetensors", {"w": np.ones(2, dtype=bool)}, metadata)
    with MaskFile.open(path) as mask_file:
        assert mask_file.policy == EqualityPolicy("rtol", 1e-3)
        assert mask_file.metadata["base_fingerprint"] == base.fingerprint()


def test_a_checkpoint_is_not_a_mask_file(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors", {"w": torch.zeros(3)}, layout="file")
    with pytest.raises(UsageError, match="not a sparsecheck mask file") as info:
        MaskFile.open(path)
    assert str(path) in str(info.value)


def test_a_folder_or_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a folder") as info:
        MaskFile.open(tmp_path)
    assert str(tmp_path) in str(info.value)
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(CheckpointError) as info:
        MaskFile.open(missing)
    assert str(missing) in str(info.value)


def test_other_versions_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "future.safetensors"
    shapes = json.dumps({"w": [3]})
    save_file({"w": np.zeros(1, np.uint8)}, str(path), {"format": FORMAT, "version": "2", "shapes": shapes})
    with pytest.raises(UsageError, match="version '2' is not supported"):
        MaskFile.open(path)


@pytest.mark.parametrize(
    ("tensors", "shapes", "problem"),
    [
        ({"w": np.zeros(2, np.uint8)}, {"w": [3, 6]}, "expected uint8 \\(3,\\) holding the bits of shape"),
        ({"w": np.zeros(1, np.uint8)}, {"w": [3], "v": [2]}, "'v' is in the shapes metadata but not stored"),
        ({"w": np.zeros(1, np.uint8), "v": np.zeros(1, np.uint8)}, {"w": [3]}, "'v' has no shape"),
        ({"w": np.zeros(1, np.float32)}, {"w": [3]}, "expected uint8"),
        ({"w": np.zeros(1, np.uint8)}, {"w": [-3]}, "bad shape"),
    ],
)
def test_corrupt_mask_files_name_file_and_tensor(
    tmp_path: Path, tensors: dict[str, np.ndarray], shapes: dict[str, list[int]], problem: str
) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "bad.safetensors"
    metadata = {**METADATA, "format": FORMAT, "version": "1", "shapes": json.dumps(shapes)}
    save_file(tensors, str(path), metadata)
    with pytest.raises(CheckpointError, match=problem) as info:
        MaskFile.open(path)
    assert str(info.value).startswith(f"{path}: corrupt mask file")


def test_reading_an_unknown_tensor_names_the_file(tmp_path: Path) -> None:
    path = write_masks(tmp_path / "m.safetensors", random_masks())
    with MaskFile.open(path) as mask_file, pytest.raises(CheckpointError, match="no tensor 'nope'") as info:
        mask_file.read("nope")
    assert str(path) in str(info.value)
