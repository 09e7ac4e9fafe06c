"""Hub ids resolve offline against a local Hugging Face cache; the network is never touched."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecheck._extras import MissingExtra
from sparsecheck.checkpoints._hub import sparsecheck_open_checkpoint
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.errors import CheckpointError
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

Opener = Callable[[Path | str], CheckpointReader]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding org/tiny at two commits; ``main`` points at the first; offline mode on."""
    cache = tmp_path / "hf" / "hub"
    repo = cache / "models--org--tiny"
    for seed, commit in [(0, COMMIT), (1, OTHER_COMMIT)]:
        write_checkpoint(
            repo / "snapshots" / commit,
            tiny_llama_state_dict(layers=1, seed=seed),
            "dir",
            config={"model_type": "llama"},
        )
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _first_value(reader: CheckpointReader) -> np.ndarray:
    return reader.read("model.norm.weight")


@pytest.mark.parametrize(
    ("source", "seed"), [("org/tiny", 0), ("org/tiny@main", 0), (f"org/tiny@{OTHER_COMMIT}", 1)]
)
def test_hub_id_resolves_to_the_cached_snapshot(
    hub_cache: Path, open_ckpt: Opener, source: str, seed: int
) -> None:
    reader = open_ckpt(source)
    commit = OTHER_COMMIT if seed else COMMIT
    assert reader.source == source
    assert reader.path == hub_cache / "models--org--tiny" / "snapshots" / commit
    assert reader.format == "safetensors"
    expected = tiny_llama_state_dict(layers=1, seed=seed)["model.norm.weight"]
    np.testing.assert_array_equal(_first_value(reader), expected.numpy())


def test_hf_home_locates_the_cache(
    hub_cache: Path, open_ckpt: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(hub_cache.parent))
    assert open_ckpt("org/tiny").path.parent.parent.name == "models--org--tiny"


@pytest.mark.parametrize("source", ["org/absent", "org/tiny@v9"])
def test_unresolvable_hub_id_is_one_line_naming_it(hub_cache: Path, open_ckpt: Opener, source: str) -> None:
    with pytest.raises(CheckpointError) as info:
        open_ckpt(source)
    message = str(info.value)
    assert message.startswith(f"{source}: no such local path, and the hub id could not be resolved")
    assert "\n" not in message


def test_missing_huggingface_hub_says_what_to_install(
    hub_cache: Path, open_ckpt: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(MissingExtra, match=r"^org/tiny: .*pip install 'sparsecheck\[hub\]'$"):
        open_ckpt("org/tiny")


def test_snapshot_without_safetensors(hub_cache: Path, open_ckpt: Opener) -> None:
    repo = hub_cache / "models--org--binonly"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    with pytest.raises(CheckpointError, match=r"^org/binonly: the hub snapshot at .* has no \.safetensors"):
        open_ckpt("org/binonly")


def test_local_paths_and_other_strings_are_left_to_other_plugins(tmp_path: Path) -> None:
    assert sparsecheck_open_checkpoint(source="org/tiny", path=tmp_path) is None
    for source in ["sft", "./sft/model", "/abs/path", "a/b/c", "org/name@"]:
        assert sparsecheck_open_checkpoint(source=source, path=None) is None


def test_a_local_folder_wins_over_a_hub_id(tmp_path: Path, open_ckpt: Opener) -> None:
    write_checkpoint(tmp_path / "org" / "tiny", {"w": torch.ones(2)}, "dir")
    reader = open_ckpt("org/tiny")
    assert reader.path == (tmp_path / "org" / "tiny").resolve()


@pytest.mark.parametrize("layout", ["dir", "sharded"])
def test_only_the_layouts_weight_files_are_fetched(
    hub_cache: Path, open_ckpt: Opener, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A repository that also ships a consolidated duplicate: the index (or model.safetensors)
    decides which weight files are asked for, at the commit the first request resolved."""
    import huggingface_hub

    snapshot = hub_cache / "models--org--dup" / "snapshots" / COMMIT
    state = tiny_llama_state_dict(layers=1)
    write_checkpoint(snapshot, state, layout, config={"model_type": "llama"})
    write_checkpoint(snapshot / "consolidated.safetensors", state, "file")
    (hub_cache / "models--org--dup" / "refs").mkdir()
    (hub_cache / "models--org--dup" / "refs" / "main").write_text(COMMIT)
    calls: list[dict[str, object]] = []
    real = huggingface_hub.snapshot_download

    def recording(repo_id: str, **kwargs: object) -> str:
        calls.append(kwargs)
        return str(real(repo_id, **kwargs))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    reader = open_ckpt("org/dup")
    weights = sorted(p.name for p in snapshot.glob("model*.safetensors"))
    assert [call["allow_patterns"] for call in calls] == [["*.json"], ["*.json", *weights]]
    assert [call["revision"] for call in calls] == [None, COMMIT]
    assert reader.format == ("safetensors" if layout == "dir" else "safetensors-sharded")
