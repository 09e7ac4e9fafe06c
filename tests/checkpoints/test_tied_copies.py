"""A tied ``lm_head`` saved as its own copy (config ``tie_word_embeddings: true``) is compared
once, under the input embedding, with a note: as the model loads it, whatever the storage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsecheck.testing import plant_changes, run_checks, tiny_llama_state_dict, write_checkpoint


def _tied_pair(root: Path, tie: bool, layout: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    base = tiny_llama_state_dict(layers=1, dtype=torch.float32, seed=0)
    tuned, _ = plant_changes(base, 0.3, seed=1)
    for state in (base, tuned):
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()  # a copy, not shared
    config = {"model_type": "llama", "tie_word_embeddings": tie}
    write_checkpoint(root / "base", base, layout, config=config)
    write_checkpoint(root / "tuned", tuned, layout, config=config)
    return base, tuned


def _truth(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], names: list[str]) -> float:
    changed = sum(int((base[n] != tuned[n]).sum()) for n in names)
    return 1 - changed / sum(base[n].numel() for n in names)


@pytest.mark.parametrize("layout", ["dir", "sharded"])
@pytest.mark.parametrize("tie", [True, False])
def test_a_tied_copy_is_compared_once_with_a_note(tmp_path: Path, tie: bool, layout: str) -> None:
    base, tuned = _tied_pair(tmp_path, tie, layout)
    checks = [
        {
            "id": "s",
            "metric": "update_sparsity",
            "args": {"base": "base", "tuned": "tuned", "policy": "exact"},
        },
        {"id": "r", "metric": "update_rank", "args": {"base": "base", "tuned": "tuned", "device": "cpu"}},
    ]
    paths = {"base": tmp_path / "base", "tuned": tmp_path / "tuned"}
    outcomes = run_checks(tmp_path, paths, checks)
    sparsity, rank = outcomes["s"].result, outcomes["r"].result
    assert sparsity is not None and rank is not None, (outcomes["s"].message, outcomes["r"].message)
    names = [n for n in base if not (tie and n == "lm_head.weight")]
    assert sparsity.value == pytest.approx(_truth(base, tuned, names), abs=1e-12)
    assert ("lm_head.weight" in sparsity.groups["tensor"]) is not tie
    matrices = sum(1 for n in names if base[n].ndim == 2)
    assert rank.fields["matrices"] == matrices
    note = "lm_head.weight: tied to model.embed_tokens.weight"
    assert any(n.startswith(note) for n in sparsity.notes) is tie
