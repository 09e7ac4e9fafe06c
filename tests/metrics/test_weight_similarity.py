"""weight_similarity against a θ_sub / θ_full pair with a known number of differing entries.

The equal fraction is exact from the planted counts; relative L2 and the update cosine are
compared with a straightforward float64 torch computation over all tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecheck import MetricResult, Status
from sparsecheck._dtypes import from_torch_dtype
from sparsecheck.checkpoints._reader import TensorMeta
from sparsecheck.metrics._api import TensorGroup
from sparsecheck.metrics.weight_similarity import WeightSimilarity
from sparsecheck.testing import plant_changes, run_checks, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]
TOL = 1e-4


def sub_of(full: State, seed: int = 7) -> tuple[State, dict[str, int]]:
    """``full`` with a known number of entries per tensor moved beyond TOL, and as many moved
    well within it; returns the copy and the count of entries beyond TOL."""
    generator = torch.Generator().manual_seed(seed)
    sub, beyond = {}, {}
    for index, (name, tensor) in enumerate(full.items()):
        flat = tensor.clone().reshape(-1)
        order = torch.randperm(flat.numel(), generator=generator)
        far, near = order[: index + 3], order[index + 3 : 2 * index + 6]
        flat[far] += 1e-2 * torch.where(flat[far] < 0, -1.0, 1.0)
        flat[near] += 2e-5
        sub[name], beyond[name] = flat.reshape(tensor.shape), far.numel()
    return sub, beyond


def flat64(state: State, names: list[str]) -> torch.Tensor:
    return torch.cat([state[n].double().reshape(-1) for n in names])


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Path], State, State, State, dict[str, int]]:
    root = tmp_path_factory.mktemp("similarity")
    base = tiny_llama_state_dict(layers=2)
    full, _ = plant_changes(base, 0.4, seed=2, magnitude=0.01)
    sub, beyond = sub_of(full)
    paths = {
        name: write_checkpoint(root / name, state)
        for name, state in (("base", base), ("full", full), ("sub", sub))
    }
    return root, paths, base, full, sub, beyond


def test_equal_fraction_relative_l2_and_cosine(
    runs: tuple[Path, dict[str, Path], State, State, State, dict[str, int]],
) -> None:
    root, paths, base, full, sub, beyond = runs
    outcomes = run_checks(
        root,
        paths,
        [
            {
                "id": "sim",
                "metric": "weight_similarity",
                "args": {"sub": "sub", "full": "full", "base": "base"},
            }
        ],
    )
    assert outcomes["sim"].status is not Status.ERROR, outcomes["sim"].message
    result = outcomes["sim"].result
    assert result is not None and result.value_field == "equal_fraction"
    names = list(base)
    n = sum(t.numel() for t in base.values())
    assert result.fields["equal"] == n - sum(beyond.values())
    assert result.value == 1 - sum(beyond.values()) / n
    s, f, b = flat64(sub, names), flat64(full, names), flat64(base, names)
    assert result.fields["relative_l2"] == pytest.approx(float((s - f).norm() / f.norm()), rel=1e-5)
    cosine = float(torch.nn.functional.cosine_similarity(s - b, f - b, dim=0))
    assert result.fields["update_cosine"] == pytest.approx(cosine, rel=1e-5)
    assert 0.5 < cosine < 1
    name = "model.layers.1.mlp.down_proj.weight"
    per_tensor = result.groups["tensor"][name]
    assert per_tensor["equal"] == base[name].numel() - beyond[name]
    ds, df = (sub[name] - base[name]).double(), (full[name] - base[name]).double()
    expected = float((ds * df).sum() / (ds.norm() * df.norm()))
    assert per_tensor["update_cosine"] == pytest.approx(expected, rel=1e-5)
    layer = [x for x in names if x.startswith("model.layers.0.")]
    sl, fl = flat64(sub, layer), flat64(full, layer)
    assert result.groups["layer"]["model.layers.0"]["relative_l2"] == pytest.approx(
        float((sl - fl).norm() / fl.norm()), rel=1e-5
    )


def test_mixed_dtypes_compare_in_float32(tmp_path: Path) -> None:
    full = tiny_llama_state_dict(layers=1, hidden=8, intermediate=16, vocab=32)
    sub = {name: t.to(torch.bfloat16) for name, t in full.items()}
    paths = {
        "sub": write_checkpoint(tmp_path / "sub", sub),
        "full": write_checkpoint(tmp_path / "full", full),
    }
    args = {"sub": "sub", "full": "full", "tol": 1e-4, "base": "full"}
    result = run_checks(tmp_path, paths, [{"id": "sim", "metric": "weight_similarity", "args": args}])[
        "sim"
    ].result
    assert result is not None
    names = list(full)
    delta = torch.cat([(sub[n].float() - full[n]).abs().reshape(-1) for n in names])
    assert result.fields["equal"] == int((delta <= 1e-4).sum())
    assert 0 < result.fields["equal"] < delta.numel()
    assert any("different dtypes" in note for note in result.notes)
    # base = full: Δ_full is zero, so the cosine is undefined
    assert np.isnan(result.fields["update_cosine"])  # type: ignore[arg-type]


def group_of(state_by_key: dict[str, State], name: str) -> TensorGroup:
    """A TensorGroup over in-memory state dicts, as the engine builds it from readers."""

    def load(key: str) -> np.ndarray:
        return state_by_key[key][name].numpy()

    def meta(key: str) -> TensorMeta:
        tensor = state_by_key[key][name]
        return TensorMeta(name, from_torch_dtype(tensor.dtype), tuple(tensor.shape))

    return TensorGroup(name, load, meta)


def test_without_base_there_is_no_cosine(
    runs: tuple[Path, dict[str, Path], State, State, State, dict[str, int]],
) -> None:
    _, _, base, full, sub, beyond = runs
    reducer = WeightSimilarity().reducer({"sub": "sub", "full": "full", "base": None, "tol": TOL})
    for name in base:
        reducer.update(group_of({"sub": sub, "full": full}, name))
    result: MetricResult = reducer.finish([])
    n = sum(t.numel() for t in base.values())
    assert result.fields["equal"] == n - sum(beyond.values())
    assert "update_cosine" not in result.fields
    assert "update_cosine" not in result.groups["module"]["lm_head.weight"]
