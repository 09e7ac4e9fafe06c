"""The planted-checkpoint kit: exact masks, bitwise-unchanged elsewhere, files HF can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsecheck.testing import plant_changes, planted_pair, tiny_llama_state_dict, write_checkpoint

INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.view(INT_VIEW[tensor.element_size()])


def test_tiny_llama_names_shapes_and_values() -> None:
    state = tiny_llama_state_dict(layers=3, hidden=8, intermediate=24, vocab=40, dtype=torch.float16, seed=5)
    assert len(state) == 3 + 3 * 9
    assert state["model.embed_tokens.weight"].shape == state["lm_head.weight"].shape == (40, 8)
    assert state["model.layers.2.mlp.down_proj.weight"].shape == (8, 24)
    assert state["model.layers.0.mlp.gate_proj.weight"].shape == (24, 8)
    assert state["model.layers.1.self_attn.k_proj.weight"].shape == (8, 8)
    assert all(t.dtype == torch.float16 for t in state.values())
    norms = torch.cat([t.float() for n, t in state.items() if "norm" in n])
    assert (norms - 1).abs().max() < 0.2
    weights = state["model.layers.0.mlp.up_proj.weight"].float()
    assert 0.01 < weights.std() < 0.04
    again = tiny_llama_state_dict(layers=3, hidden=8, intermediate=24, vocab=40, dtype=torch.float16, seed=5)
    assert all(torch.equal(state[n], again[n]) for n in state)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64], ids=str)
def test_planted_masks_are_exact(dtype: torch.dtype) -> None:
    base = tiny_llama_state_dict(dtype=dtype)
    tuned, masks = plant_changes(base, 0.37, seed=4)
    assert set(tuned) == set(masks) == set(base)
    for name, tensor in base.items():
        mask, new = masks[name], tuned[name]
        assert mask.dtype == torch.bool and mask.shape == tensor.shape
        assert new.dtype == tensor.dtype and new.shape == tensor.shape
        assert int(mask.sum()) == round(0.37 * tensor.numel())
        assert torch.equal(_bits(new)[~mask], _bits(tensor)[~mask])  # bitwise identical elsewhere
        assert bool((new[mask] != tensor[mask]).all())
        assert bool(((new[mask].double() - tensor[mask].double()).abs() > 1e-5).all())


def test_tiny_magnitudes_still_change_after_rounding() -> None:
    base = {"w": torch.linspace(-2, 2, 1001).to(torch.bfloat16)}
    tuned, masks = plant_changes(base, 1.0, magnitude=1e-6, min_abs_change=0.0)
    assert bool(masks["w"].all())
    assert bool((tuned["w"] != base["w"]).all())
    steps = (tuned["w"].float() - base["w"].float()).abs()
    assert steps.max() < 0.1  # moved by about one bf16 step, not far


def test_per_tensor_fractions_and_seeds() -> None:
    base = tiny_llama_state_dict()
    fractions = {"lm_head.weight": 0.5, "model.norm.weight": 1.0}
    tuned, masks = plant_changes(base, fractions, seed=1)
    for name, mask in masks.items():
        assert int(mask.sum()) == round(fractions.get(name, 0.0) * mask.numel())
        if name not in fractions:
            assert torch.equal(tuned[name], base[name])
    _, same = plant_changes(base, fractions, seed=1)
    _, other = plant_changes(base, fractions, seed=2)
    assert torch.equal(same["lm_head.weight"], masks["lm_head.weight"])
    assert not torch.equal(other["lm_head.weight"], masks["lm_head.weight"])


def test_bad_fractions_are_refused() -> None:
    base = tiny_llama_state_dict(layers=1)
    with pytest.raises(ValueError, match=r"lm_head\.bias"):
        plant_changes(base, {"lm_head.bias": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plant_changes(base, 1.5)
    with pytest.raises(TypeError, match="floating-point"):
        plant_changes({"ids": torch.arange(4)}, 0.5)


def test_sharded_layout_matches_save_pretrained(tmp_path: Path) -> None:
    state = tiny_llama_state_dict(layers=2)
    folder = write_checkpoint(tmp_path / "c", state, "sharded", shards=3, config={"model_type": "llama"})
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(state)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in state.values())
    loaded = {}
    for shard in shards:
        part = load_file(folder / shard)
        assert all(index["weight_map"][name] == shard for name in part)
        loaded.update(part)
    assert all(torch.equal(loaded[n], state[n]) for n in state)
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "llama"}


def test_bin_layouts_keep_tied_weights_shared(tmp_path: Path) -> None:
    state = tiny_llama_state_dict(layers=1)
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    folder = write_checkpoint(tmp_path / "c", state, "bin")
    loaded = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert loaded["lm_head.weight"].data_ptr() == loaded["model.embed_tokens.weight"].data_ptr()
    sharded = write_checkpoint(tmp_path / "s", state, "bin-sharded", shards=2)
    assert sorted(p.name for p in sharded.iterdir()) == [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
    ]


@pytest.mark.parametrize("layout", ["dir", "file"])
def test_planted_pair_on_disk_matches_its_masks(tmp_path: Path, layout: str) -> None:
    pair = planted_pair(tmp_path, fraction=0.3, layout=layout, seed=7)  # type: ignore[arg-type]
    base_file = pair.base if layout == "file" else pair.base / "model.safetensors"
    tuned_file = pair.tuned if layout == "file" else pair.tuned / "model.safetensors"
    base, tuned = load_file(base_file), load_file(tuned_file)
    assert base["lm_head.weight"].dtype == torch.bfloat16
    changed = 0
    for name, mask in pair.masks.items():
        differs = _bits(base[name]) != _bits(tuned[name])
        assert torch.equal(differs, mask)
        changed += int(differs.sum())
    assert pair.changed == changed
    assert pair.total == sum(t.numel() for t in base.values())
    assert pair.sparsity == pytest.approx(1 - changed / pair.total)
    assert pair.sparsity == pytest.approx(0.7, abs=0.01)
