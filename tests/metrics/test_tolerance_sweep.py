"""tolerance_sweep against torch's |Δ| > τ per τ, and against update_sparsity at the same τ.

The tuned checkpoint moves entries by |Δ| spread over 1e-10 … 1e-2 (log-uniform), plus +0 → -0
entries (stored bits differ, values do not), so every tolerance of the sweep separates some
entries from others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecheck import CheckOutcome, MetricResult, Status
from sparsecheck.metrics._equality import EqualityPolicy, compare_arrays
from sparsecheck.metrics.tolerance_sweep import DEFAULT_TOLERANCES, changed_counts, tolerance_label
from sparsecheck.testing import run_checks, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]


def spread_moves(state: State, seed: int = 0) -> tuple[State, State]:
    """A base (``state`` with its first entries +0) and a tuned copy of it."""
    generator = torch.Generator().manual_seed(seed)
    base, tuned = {}, {}
    for name, tensor in state.items():
        base[name] = tensor.clone()
        base[name].reshape(-1)[:3] = 0.0
        wide = base[name].double()
        exponent = -10 + 8 * torch.rand(tensor.shape, generator=generator, dtype=torch.float64)
        sign = torch.where(torch.rand(tensor.shape, generator=generator) < 0.5, -1.0, 1.0).double()
        move = torch.rand(tensor.shape, generator=generator) < 0.7
        moved = torch.where(move, wide + sign * 10**exponent, wide).to(tensor.dtype)
        moved.reshape(-1)[:3] = -0.0  # +0 → -0: bits differ, values equal
        tuned[name] = moved
    return base, tuned


def results(outcomes: dict[str, CheckOutcome]) -> dict[str, MetricResult]:
    for outcome in outcomes.values():
        assert outcome.status is not Status.ERROR, outcome.message
    return {key: o.result for key, o in outcomes.items() if o.result is not None}


def reference_sparsity(base: State, tuned: State, names: list[str], tol: float) -> float:
    """1 - #(|Δ| > τ) / n with Δ in float32 (float64 for float64 tensors), on whole tensors."""
    changed = n = 0
    for name in names:
        wide = torch.float64 if base[name].dtype == torch.float64 else torch.float32
        delta = (tuned[name].to(wide) - base[name].to(wide)).abs()
        changed += int((delta > tol).sum())
        n += delta.numel()
    return 1 - changed / n


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_sweep_matches_torch_and_update_sparsity(tmp_path: Path, dtype: torch.dtype) -> None:
    base, tuned = spread_moves(tiny_llama_state_dict(layers=2, dtype=dtype))
    paths = {
        "base": write_checkpoint(tmp_path / "base", base),
        "tuned": write_checkpoint(tmp_path / "tuned", tuned),
    }
    pair = {"base": "base", "tuned": "tuned"}
    checks = [
        {"id": "sweep", "metric": "tolerance_sweep", "args": pair},
        {"id": "exact", "metric": "update_sparsity", "args": {**pair, "policy": "exact"}},
        {"id": "atol", "metric": "update_sparsity", "args": {**pair, "policy": "atol", "tol": 1e-5}},
    ]
    got = results(run_checks(tmp_path, paths, checks))
    sweep, names = got["sweep"], list(base)
    expected = [reference_sparsity(base, tuned, names, tol) for tol in DEFAULT_TOLERANCES]
    for tol, want in zip(DEFAULT_TOLERANCES, expected, strict=True):
        assert sweep.fields[f"sparsity_at_{tolerance_label(tol)}"] == pytest.approx(want, abs=1e-15), tol
    # Every tolerance separates some entries (bf16 moves are at least a bf16 step, so the
    # smallest tolerances agree there).
    assert len(set(expected)) == len(expected) if dtype != torch.bfloat16 else len(set(expected)) > 3
    assert sweep.series == {
        "tolerance": list(DEFAULT_TOLERANCES),
        "sparsity": pytest.approx(expected, abs=1e-15),
    }
    robust = [s for t, s in zip(DEFAULT_TOLERANCES, expected, strict=True) if 1e-6 <= t <= 1e-4]
    assert sweep.value == pytest.approx(max(robust) - min(robust), abs=1e-15)
    assert sweep.fields["sparsity_at_0"] == got["exact"].fields["sparsity"]
    assert sweep.fields["sparsity_at_1e-05"] == got["atol"].fields["sparsity"]
    layer = [n for n in names if n.startswith("model.layers.1.")]
    assert sweep.groups["layer"]["model.layers.1"]["sparsity_at_1e-06"] == pytest.approx(
        reference_sparsity(base, tuned, layer, 1e-6), abs=1e-15
    )
    head = "lm_head.weight"
    assert sweep.groups["tensor"][head]["sparsity_at_1e-05"] == got["atol"].groups["tensor"][head]["sparsity"]


def test_counts_agree_with_atol_policy_at_float32_boundaries() -> None:
    # τ = 3e-6 rounds up in float32: a |Δ| equal to float32(τ) is not above it under atol.
    tolerances = np.array([0.0, 3e-6, 1e-5, 0.1], dtype=np.float64)
    base = np.zeros(6, dtype=np.float32)
    tuned = np.array([np.float32(3e-6), np.float32(1e-5), 2e-5, -0.5, np.nan, -0.0], dtype=np.float32)
    counts = changed_counts(base, "float32", tuned, "float32", tolerances)
    for tol, count in zip(tolerances, counts, strict=True):
        policy = EqualityPolicy("exact" if tol == 0 else "atol", float(tol))
        assert count == compare_arrays(base, "float32", tuned, "float32", policy).changed, tol
    assert list(counts) == [5, 4, 3, 2]  # the NaN is changed at every τ, -0 at none


def test_bad_tolerances_are_usage_errors(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(layers=1, hidden=8, intermediate=8, vocab=16)
    paths = {"base": write_checkpoint(tmp_path / "base", base)}
    args = {"base": "base", "tuned": "base", "tolerances": [1e-5, -1.0]}
    outcome = run_checks(tmp_path, paths, [{"id": "bad", "metric": "tolerance_sweep", "args": args}])["bad"]
    assert outcome.status is Status.ERROR and outcome.error_kind == "usage"
    assert "tolerances" in outcome.message
