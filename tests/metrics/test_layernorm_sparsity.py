"""layernorm_sparsity through the engine: update_sparsity over normalization tensors only."""

from __future__ import annotations

from pathlib import Path

import torch

from sparsecheck import Status
from sparsecheck.testing import plant_changes, run_checks, tiny_llama_state_dict, write_checkpoint


def planted(root: Path, state: dict[str, torch.Tensor]) -> tuple[dict[str, Path], dict[str, torch.Tensor]]:
    """Every tensor planted with its own fraction; returns the checkpoints and the masks."""
    fractions = {name: 0.1 + 0.8 * ((i * 5) % 11) / 10 for i, name in enumerate(state)}
    tuned, masks = plant_changes(state, fractions, seed=3)
    paths = {"base": write_checkpoint(root / "base", state), "tuned": write_checkpoint(root / "tuned", tuned)}
    return paths, masks


def test_equals_update_sparsity_on_norm_tensors(tmp_path: Path) -> None:
    state = tiny_llama_state_dict(layers=3, dtype=torch.bfloat16)
    paths, masks = planted(tmp_path, state)
    args = {"base": "base", "tuned": "tuned", "policy": "exact"}
    outcomes = run_checks(
        tmp_path,
        paths,
        [
            {"id": "ln", "metric": "layernorm_sparsity", "args": args},
            {"id": "us", "metric": "update_sparsity", "args": {**args, "include": ["*norm*"]}},
        ],
    )
    ln, us = outcomes["ln"].result, outcomes["us"].result
    assert ln is not None and us is not None, (outcomes["ln"].message, outcomes["us"].message)
    norm_names = {name for name in state if "norm" in name}
    assert len(norm_names) == 2 * 3 + 1
    assert set(ln.groups["tensor"]) == norm_names
    changed = sum(int(masks[n].sum()) for n in norm_names)
    numel = sum(state[n].numel() for n in norm_names)
    assert ln.fields["changed"] == changed and ln.fields["compared"] == numel
    assert ln.value == 1 - changed / numel
    for key in ("sparsity", "changed", "compared", "sparsity_mean", "tensors"):
        assert ln.fields[key] == us.fields[key], key
    assert ln.groups == us.groups
    assert "normalization tensors only" in ln.definition


def test_patterns_override_and_ignore_case(tmp_path: Path) -> None:
    state = {
        "transformer.h.0.LN_1.weight": torch.ones(8),
        "transformer.h.0.attn.c_attn.weight": torch.zeros(8, 8),
        "transformer.h.0.LayerNorm.bias": torch.zeros(8),
        "transformer.ln_f.weight": torch.ones(8),
    }
    paths, masks = planted(tmp_path, state)
    default_names = {
        "transformer.h.0.LN_1.weight",
        "transformer.h.0.LayerNorm.bias",
        "transformer.ln_f.weight",
    }
    outcomes = run_checks(
        tmp_path,
        paths,
        [
            {"id": "default", "metric": "layernorm_sparsity", "args": {"base": "base", "tuned": "tuned"}},
            {
                "id": "only-final",
                "metric": "layernorm_sparsity",
                "args": {"base": "base", "tuned": "tuned", "patterns": ["*.LN_F.*"]},
            },
        ],
    )
    default, final = outcomes["default"].result, outcomes["only-final"].result
    assert default is not None and final is not None
    assert set(default.groups["tensor"]) == default_names
    assert default.fields["changed"] == sum(int(masks[n].sum()) for n in default_names)
    assert set(final.groups["tensor"]) == {"transformer.ln_f.weight"}
    assert final.fields["changed"] == int(masks["transformer.ln_f.weight"].sum())


def test_no_norm_tensor_is_an_error_naming_the_patterns(tmp_path: Path) -> None:
    state = tiny_llama_state_dict(layers=1)
    paths, _ = planted(tmp_path, state)
    outcome = run_checks(
        tmp_path,
        paths,
        [
            {
                "id": "none",
                "metric": "layernorm_sparsity",
                "args": {"base": "base", "tuned": "tuned", "patterns": ["*bias*"]},
            }
        ],
    )["none"]
    assert outcome.status is Status.ERROR
    assert outcome.error_kind == "usage"
    assert "*bias*" in outcome.message and "no normalization tensor" in outcome.message
