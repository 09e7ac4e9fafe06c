"""Pairing tensors by name: mismatches, skip mode, globs, tied weights, storage order."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecheck.checkpoints._pairing import Pairing, pair_tensors
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.errors import CheckpointError
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

Opener = Callable[[Path | str], CheckpointReader]
EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def _pair(
    readers: dict[str, CheckpointReader],
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    on_mismatch: str = "error",
) -> Pairing:
    return pair_tensors(readers, include, exclude, on_mismatch, context="check each-run[rl_a]")


def _resized(tmp_path: Path, open_ckpt: Opener) -> dict[str, CheckpointReader]:
    """sft and rl_a where rl_a has a larger vocabulary and two extra bias tensors."""
    base = tiny_llama_state_dict(layers=2, vocab=64)
    tuned = tiny_llama_state_dict(layers=2, vocab=72)
    tuned["model.layers.0.mlp.up_proj.bias"] = torch.zeros(32)
    tuned["model.layers.1.mlp.up_proj.bias"] = torch.zeros(32)
    return {
        "sft": open_ckpt(write_checkpoint(tmp_path / "sft", base, "dir")),
        "rl_a": open_ckpt(write_checkpoint(tmp_path / "rl_a", tuned, "sharded")),
    }


def _header_offsets(file: Path) -> dict[str, int]:
    length = struct.unpack("<Q", file.read_bytes()[:8])[0]
    header = json.loads(file.read_bytes()[8 : 8 + length])
    return {name: entry["data_offsets"][0] for name, entry in header.items() if name != "__metadata__"}


def test_names_come_in_storage_order_of_the_first_checkpoint(tmp_path: Path, open_ckpt: Opener) -> None:
    state = tiny_llama_state_dict(layers=3)
    first = write_checkpoint(tmp_path / "a", state, "sharded", shards=3)
    second = write_checkpoint(tmp_path / "b", state, "bin")
    pairing = _pair({"a": open_ckpt(first), "b": open_ckpt(second)})
    expected = [
        name
        for shard in sorted(first.glob("*.safetensors"))
        for name, _ in sorted(_header_offsets(shard).items(), key=lambda item: item[1])
    ]
    assert list(pairing.names) == expected
    assert pairing.skipped == () and pairing.notes == ()


def test_mismatch_is_an_error_that_says_how_to_leave_it_out(tmp_path: Path, open_ckpt: Opener) -> None:
    with pytest.raises(CheckpointError) as info:
        _pair(_resized(tmp_path, open_ckpt))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("check each-run[rl_a]: ")
    assert (
        "2 tensors missing from sft: model.layers.0.mlp.up_proj.bias, model.layers.1.mlp.up_proj.bias"
        in message
    )
    assert "2 shape mismatches" in message and "(64, 16) in sft vs (72, 16) in rl_a" in message
    suggested = json.loads(message.split("exclude: ")[1].split("]")[0] + "]")
    assert sorted(suggested) == sorted(["model.layers.*.mlp.up_proj.bias", EMBED, HEAD])
    assert _pair(_resized(tmp_path / "again", open_ckpt), exclude=tuple(suggested)).skipped == ()
    assert "on_mismatch: skip" in message


def test_skip_mode_lists_each_skipped_tensor_with_its_reason(tmp_path: Path, open_ckpt: Opener) -> None:
    readers = _resized(tmp_path, open_ckpt)
    pairing = _pair(readers, on_mismatch="skip")
    reasons = {s.name: s.reason for s in pairing.skipped}
    assert reasons == {
        "model.layers.0.mlp.up_proj.bias": "only in rl_a",
        "model.layers.1.mlp.up_proj.bias": "only in rl_a",
        EMBED: "shape (64, 16) in sft vs (72, 16) in rl_a",
        HEAD: "shape (64, 16) in sft vs (72, 16) in rl_a",
    }
    assert set(pairing.names) == set(readers["sft"].tensors()) - {EMBED, HEAD}


def test_include_and_exclude_globs(tmp_path: Path, open_ckpt: Opener) -> None:
    state = tiny_llama_state_dict(layers=2)
    reader = open_ckpt(write_checkpoint(tmp_path / "a", state, "dir"))
    pairing = _pair(
        {"a": reader}, include=("model.layers.*", "model.norm.*", "nothing.*"), exclude=("*.mlp.*",)
    )
    expected = {
        n for n in state if (n.startswith("model.layers.") or n == "model.norm.weight") and ".mlp." not in n
    }
    assert set(pairing.names) == expected
    assert pairing.notes == ("include pattern 'nothing.*' matches no tensor",)


def test_different_dtypes_pair(tmp_path: Path, open_ckpt: Opener) -> None:
    a = open_ckpt(write_checkpoint(tmp_path / "a", tiny_llama_state_dict(dtype=torch.float32), "dir"))
    b = open_ckpt(write_checkpoint(tmp_path / "b", tiny_llama_state_dict(dtype=torch.bfloat16), "dir"))
    pairing = _pair({"a": a, "b": b})
    assert set(pairing.names) == set(a.tensors()) and pairing.skipped == ()


def test_a_run_of_three_names_the_checkpoint_lacking_a_tensor(tmp_path: Path, open_ckpt: Opener) -> None:
    state = tiny_llama_state_dict(layers=1)
    shorter = {n: t for n, t in state.items() if n != "model.norm.weight"}
    readers = {
        "step1": open_ckpt(write_checkpoint(tmp_path / "s1", state, "dir")),
        "step2": open_ckpt(write_checkpoint(tmp_path / "s2", shorter, "dir")),
        "step3": open_ckpt(write_checkpoint(tmp_path / "s3", state, "bin")),
    }
    with pytest.raises(CheckpointError, match=r"1 tensor missing from step2: model\.norm\.weight"):
        _pair(readers)
    pairing = _pair(readers, on_mismatch="skip")
    assert [(s.name, s.reason) for s in pairing.skipped] == [("model.norm.weight", "missing from step2")]


def _tied_bin(folder: Path, seed: int = 0) -> Path:
    state = tiny_llama_state_dict(layers=1, seed=seed)
    state[HEAD] = state[EMBED]  # tied: one storage, two names
    return write_checkpoint(folder, state, "bin")


def test_bin_reports_tied_weights_as_aliases(tmp_path: Path, open_ckpt: Opener) -> None:
    reader = open_ckpt(_tied_bin(tmp_path / "tied"))
    assert reader.aliases() == {EMBED: HEAD}  # the target is the first name in sorted order
    assert EMBED not in reader.tensors() and HEAD in reader.tensors()
    np.testing.assert_array_equal(reader.read(EMBED), reader.read(HEAD))


def test_tied_bin_against_safetensors_saved_once(tmp_path: Path, open_ckpt: Opener) -> None:
    """save_pretrained's safetensors drop lm_head.weight; the .bin stores it over the embedding."""
    once = tiny_llama_state_dict(layers=1, seed=1)
    del once[HEAD]
    readers = {
        "sft": open_ckpt(_tied_bin(tmp_path / "sft")),
        "rl_a": open_ckpt(write_checkpoint(tmp_path / "rl_a", once, "dir")),
    }
    pairing = _pair(readers)
    assert EMBED in pairing.names and HEAD not in pairing.names
    assert pairing.skipped == ()
    assert pairing.notes == (f"{HEAD}: tied to {EMBED} in sft, compared once",)
    stored = pairing.stored["sft"][EMBED]
    assert stored.meta.name == HEAD  # where the .bin stores it
    np.testing.assert_array_equal(readers["sft"].read(stored.meta.name), readers["sft"].read(EMBED))
    assert pairing.stored["rl_a"][EMBED].meta.name == EMBED


def test_names_tied_on_every_side_are_compared_once(tmp_path: Path, open_ckpt: Opener) -> None:
    readers = {"a": open_ckpt(_tied_bin(tmp_path / "a")), "b": open_ckpt(_tied_bin(tmp_path / "b", seed=2))}
    pairing = _pair(readers)
    assert HEAD in pairing.names and EMBED not in pairing.names
    assert pairing.notes == (f"{EMBED}: tied to {HEAD} in every checkpoint, compared once",)


def test_tied_on_one_side_only_compares_both_names(tmp_path: Path, open_ckpt: Opener) -> None:
    readers = {
        "a": open_ckpt(_tied_bin(tmp_path / "a")),
        "b": open_ckpt(write_checkpoint(tmp_path / "b", tiny_llama_state_dict(layers=1), "dir")),
    }
    pairing = _pair(readers)
    assert {HEAD, EMBED} <= set(pairing.names)
    assert pairing.notes == ()
    assert pairing.stored["a"][EMBED].meta.name == pairing.stored["a"][HEAD].meta.name == HEAD
