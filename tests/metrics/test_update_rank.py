"""update_rank through the real engine, against planted rank-r updates and numpy's SVD.

Checkpoints get ΔW = U Vᵀ (U m x r, V n x r, seeded) added to chosen matrices, so each
matrix's numerical rank is known exactly; stable and effective rank are compared with a
straightforward ``numpy.linalg.svd`` of the same stored difference.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from sparsecheck import CheckOutcome, MetricResult, Status
from sparsecheck.metrics import _svd_torch
from sparsecheck.metrics._api import Scalar
from sparsecheck.metrics._grouping import layer_of, module_of
from sparsecheck.metrics._svd import RankTolerance, SvdBatcher, update_matrix
from sparsecheck.testing import run_spec, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]
HIDDEN, INTERMEDIATE, VOCAB = 16, 32, 64
#: Planted rank per matrix: zero updates, low ranks and full rank (min(m, n) = 16 everywhere).
PLANTED = {
    "model.embed_tokens.weight": 0,
    "model.layers.0.self_attn.q_proj.weight": 1,
    "model.layers.0.self_attn.k_proj.weight": 0,
    "model.layers.0.self_attn.v_proj.weight": 3,
    "model.layers.0.self_attn.o_proj.weight": 16,
    "model.layers.0.mlp.gate_proj.weight": 5,
    "model.layers.0.mlp.up_proj.weight": 16,
    "model.layers.0.mlp.down_proj.weight": 2,
    "model.layers.1.self_attn.q_proj.weight": 4,
    "model.layers.1.self_attn.k_proj.weight": 2,
    "model.layers.1.self_attn.v_proj.weight": 0,
    "model.layers.1.self_attn.o_proj.weight": 7,
    "model.layers.1.mlp.gate_proj.weight": 16,
    "model.layers.1.mlp.up_proj.weight": 1,
    "model.layers.1.mlp.down_proj.weight": 9,
    "lm_head.weight": 4,
}
NORMS = 5  # 1-D tensors of the tiny model: two per layer and the final norm


def low_rank(m: int, n: int, rank: int, seed: int, scale: float = 0.05) -> torch.Tensor:
    """A random m x n float64 matrix of exactly ``rank`` (U Vᵀ with Gaussian factors)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(m, rank, generator=g, dtype=torch.float64)
    v = torch.randn(n, rank, generator=g, dtype=torch.float64)
    product: torch.Tensor = (u @ v.T) * (scale / max(rank, 1) ** 0.5)
    return product


def planted_pair(dtype: torch.dtype, ranks: dict[str, int] = PLANTED) -> tuple[State, State]:
    base = tiny_llama_state_dict(hidden=HIDDEN, intermediate=INTERMEDIATE, vocab=VOCAB, dtype=dtype)
    tuned = {name: t.clone() for name, t in base.items()}
    for index, (name, rank) in enumerate(ranks.items()):
        shape = base[name].shape
        tuned[name] = (base[name].double() + low_rank(shape[0], shape[1], rank, seed=index)).to(dtype)
    return base, tuned


def stored_delta(base: torch.Tensor, tuned: torch.Tensor) -> np.ndarray:
    """ΔW as the metric defines it: float32, subtracted in float64 for float64 storage."""
    wide = np.float64 if torch.float64 in (base.dtype, tuned.dtype) else np.float32
    delta: np.ndarray = tuned.double().numpy().astype(wide) - base.double().numpy().astype(wide)
    return delta.astype(np.float32)


def numpy_spectrum(delta: np.ndarray) -> tuple[int, float, float]:
    """Rank (matrix_rank's rule), stable rank and effective rank, spelled out with numpy."""
    s = np.linalg.svd(delta, compute_uv=False).astype(np.float64)
    if s[0] == 0:
        return 0, 0.0, 0.0
    rank = int(np.linalg.matrix_rank(delta))
    p = s / s.sum()
    p = p[p > 0]
    return rank, float((s**2).sum() / s[0] ** 2), float(np.exp(-(p * np.log(p)).sum()))


def run_checks(
    root: Path, base: State, tuned: State, checks: list[dict[str, Any]]
) -> dict[str, CheckOutcome]:
    """Write the pair and a spec of update_rank ``checks`` under ``root``; outcomes by id."""
    paths = {
        side: write_checkpoint(root / side, tensors) for side, tensors in (("base", base), ("tuned", tuned))
    }
    spec = {
        "version": 1,
        "checkpoints": {side: str(path) for side, path in paths.items()},
        "checks": [
            {"id": c.pop("id"), "metric": "update_rank", "args": {"base": "base", "tuned": "tuned", **c}}
            for c in checks
        ],
    }
    path = root / "rank.sparsecheck.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    session = run_spec(path, options={"cache_dir": root / "cache"})
    return {outcome.check.id: outcome for outcome in session.outcomes}


def measure(root: Path, base: State, tuned: State, checks: list[dict[str, Any]]) -> dict[str, MetricResult]:
    results = {}
    for check_id, outcome in run_checks(root, base, tuned, checks).items():
        assert outcome.status is not Status.ERROR, outcome.message
        assert outcome.result is not None
        results[check_id] = outcome.result
    return results


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def num(fields: Mapping[str, Scalar], key: str) -> float:
    value = fields[key]
    assert isinstance(value, int | float), (key, value)
    return float(value)


@pytest.mark.parametrize(
    ("dtype", "batch"),
    [(torch.float32, False), (torch.float32, True), (torch.float64, False)],
    ids=["float32", "float32-batched", "float64"],
)
def test_planted_ranks_exact(tmp_path: Path, dtype: torch.dtype, batch: bool) -> None:
    base, tuned = planted_pair(dtype)
    result = measure(tmp_path, base, tuned, [{"id": "rank", "batch": batch, "device": "cpu"}])["rank"]
    tensors = result.groups["tensor"]
    assert set(tensors) == set(PLANTED)
    pct = {name: 100.0 * rank / min(base[name].shape) for name, rank in PLANTED.items()}
    for name, rank in PLANTED.items():
        got = tensors[name]
        want_rank, want_stable, want_effective = numpy_spectrum(stored_delta(base[name], tuned[name]))
        assert got["rank"] == rank == want_rank, name
        assert got["rank_pct"] == got["rank_pct_mean"] == pytest.approx(pct[name])
        assert got["stable_rank"] == pytest.approx(want_stable, rel=1e-4), name
        assert got["effective_rank"] == pytest.approx(want_effective, rel=1e-4), name
        assert got["shape"] == " x ".join(map(str, base[name].shape))
        if rank == 0:
            assert got["stable_rank"] == got["effective_rank"] == got["sigma_max"] == 0
        else:
            # noise singular values far below the tolerance add a trace of entropy
            assert 1 <= num(got, "stable_rank") <= num(got, "effective_rank") <= rank * (1 + 1e-4)

    fields = result.fields
    changed = {name: value for name, value in pct.items() if value}
    assert result.value == fields["rank_pct_mean"] == pytest.approx(mean(list(changed.values())))
    assert fields["rank_pct_mean_all"] == pytest.approx(mean(list(pct.values())))
    assert fields["rank_pct_min"] == min(changed.values())
    assert fields["changed_matrices"] == len(changed) == len(PLANTED) - 3
    assert any("3 matrices are untouched" in note for note in result.notes)
    assert fields["matrices"] == fields["matrices_total"] == len(PLANTED)
    assert fields["full_rank_matrices"] == sum(rank == 16 for rank in PLANTED.values())
    assert fields["non_matrix_skipped"] == NORMS
    assert fields["sampled"] is False and fields["max_matrices"] is None
    assert fields["tol_rule"] == "sigma_max * max(m, n) * eps(float32)"
    assert fields["device"] == "cpu"
    stable = [num(tensors[n], "stable_rank") for n in changed]
    assert fields["stable_rank_mean"] == pytest.approx(mean(stable))

    for granularity, key_of in (("module", module_of), ("layer", layer_of)):
        members: dict[str, list[str]] = {}
        for name in PLANTED:
            members.setdefault(key_of(name), []).append(name)
        groups = result.groups[granularity]
        assert set(groups) == set(members)
        for key, names in members.items():
            moved = [n for n in names if pct[n]]
            if not moved:  # every matrix of the group untouched: no mean over changed ones
                assert math.isnan(num(groups[key], "rank_pct_mean")), key
                continue
            assert groups[key]["rank_pct_mean"] == pytest.approx(mean([pct[n] for n in moved])), key
            assert groups[key]["rank_pct_mean_all"] == pytest.approx(mean([pct[n] for n in names])), key
            assert groups[key]["rank_pct_min"] == pytest.approx(min(pct[n] for n in moved)), key
            assert groups[key]["matrices"] == len(names)
            assert groups[key]["effective_rank_mean"] == pytest.approx(
                mean([num(tensors[n], "effective_rank") for n in moved])
            )
    q_proj = result.groups["module"]["model.layers.*.self_attn.q_proj.weight"]
    assert q_proj["rank_pct_mean"] == pytest.approx(100 * (1 + 4) / 2 / 16)


def test_bf16_storage_rounding_makes_the_update_full_rank(tmp_path: Path) -> None:
    # bf16 rounding of θ_tuned adds full-rank noise far above the default tolerance; a
    # rank-1 update of singular value ~0.5 then shows full numerical rank.  An atol between
    # the noise (~1e-3) and the update recovers rank 1; stable rank stays near 1.
    name = "model.layers.0.mlp.up_proj.weight"
    base, tuned = planted_pair(torch.bfloat16, {name: 1})
    results = measure(tmp_path, base, tuned, [{"id": "default"}, {"id": "atol", "atol": 0.05}])
    default, with_atol = results["default"], results["atol"]
    assert default.groups["tensor"][name]["rank"] == 16  # full, though the planted rank is 1
    assert with_atol.groups["tensor"][name]["rank"] == 1
    assert num(default.groups["tensor"][name], "stable_rank") < 1.01
    assert any("16 bits or fewer" in note for note in default.notes)
    assert not any("16 bits or fewer" in note for note in with_atol.notes)
    # every other matrix is bitwise unchanged: rank 0 whatever the storage
    assert all(f["rank"] == 0 for n, f in default.groups["tensor"].items() if n != name)


def test_tolerance_rules(tmp_path: Path) -> None:
    # ΔW = Q1 diag(s) Q2ᵀ with orthonormal Q1, Q2 and chosen singular values, stored in float64
    name, m, n = "model.layers.0.mlp.gate_proj.weight", INTERMEDIATE, HIDDEN
    singular = torch.tensor([1.0, 3e-2, 3e-4, 3e-6], dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    q1 = torch.linalg.qr(torch.randn(m, 4, generator=g, dtype=torch.float64))[0]
    q2 = torch.linalg.qr(torch.randn(n, 4, generator=g, dtype=torch.float64))[0]
    base = tiny_llama_state_dict(hidden=HIDDEN, intermediate=INTERMEDIATE, vocab=VOCAB, dtype=torch.float64)
    tuned = dict(base)
    tuned[name] = base[name] + q1 @ torch.diag(singular) @ q2.T
    results = measure(
        tmp_path,
        base,
        tuned,
        [
            {"id": "default"},  # tol = 1 * 32 * 2^-23 ≈ 3.8e-6: 3e-6 falls below it
            {"id": "atol-small", "atol": 1e-6},
            {"id": "atol-large", "atol": 1e-3},
            {"id": "float64", "precision": "float64"},  # tol ≈ 7e-15
        ],
    )
    want = {"default": 3, "atol-small": 4, "atol-large": 2, "float64": 4}
    for check_id, rank in want.items():
        assert results[check_id].groups["tensor"][name]["rank"] == rank, check_id
    default = results["default"].groups["tensor"][name]
    assert default["tol"] == pytest.approx(1.0 * m * 2.0**-23, rel=1e-6)
    assert results["float64"].groups["tensor"][name]["tol"] == pytest.approx(1.0 * m * 2.0**-52, rel=1e-6)
    assert results["atol-small"].fields["tol_rule"] == "atol 1e-06"
    assert results["float64"].fields["tol_rule"] == "sigma_max * max(m, n) * eps(float64)"


def storage_order(path: Path) -> list[str]:
    """Tensor names of a safetensors file by data offset, read from its header."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    header.pop("__metadata__", None)
    return sorted(header, key=lambda name: header[name]["data_offsets"][0])


def test_max_matrices_first_takes_storage_order(tmp_path: Path) -> None:
    base, tuned = planted_pair(torch.float32)
    results = measure(
        tmp_path,
        base,
        tuned,
        [{"id": "three", "max_matrices": 3}, {"id": "all", "max_matrices": 100}],
    )
    matrices = [n for n in storage_order(tmp_path / "base" / "model.safetensors") if base[n].dim() == 2]
    three = results["three"]
    assert set(three.groups["tensor"]) == set(matrices[:3])
    assert three.fields["matrices"] == 3 and three.fields["matrices_total"] == len(PLANTED)
    assert three.fields["sampled"] is True and three.fields["max_matrices"] == 3
    assert f"rank computed on 3 of {len(PLANTED)} matrices, sampled: first 3 in storage order" in three.notes
    everything = results["all"]
    assert everything.fields["sampled"] is False and everything.fields["matrices"] == len(PLANTED)
    assert not any("sampled" in note for note in everything.notes)


def test_random_sample_is_seeded_and_capped_in_storage_order(tmp_path: Path) -> None:
    base, tuned = planted_pair(torch.float32)
    checks = [
        {"id": f"seed{seed}", "sample": "random", "sample_fraction": 0.5, "seed": seed} for seed in range(4)
    ]
    checks += [
        {"id": "again", "sample": "random", "sample_fraction": 0.5, "seed": 0},
        {"id": "capped", "sample": "random", "sample_fraction": 0.5, "seed": 0, "max_matrices": 2},
    ]
    results = measure(tmp_path, base, tuned, checks)
    chosen = {check_id: set(r.groups["tensor"]) for check_id, r in results.items()}
    assert chosen["again"] == chosen["seed0"]
    assert len({frozenset(chosen[f"seed{seed}"]) for seed in range(4)}) > 1
    for seed in range(4):
        picked = results[f"seed{seed}"]
        assert 0 < num(picked.fields, "matrices") < len(PLANTED)
        assert picked.fields["sampled"] is True
        assert any("random (sample_fraction 0.5, seed" in note for note in picked.notes)
    order = [n for n in storage_order(tmp_path / "base" / "model.safetensors") if n in chosen["seed0"]]
    assert chosen["capped"] == set(order[:2])


def test_non_finite_update_is_skipped_and_listed(tmp_path: Path) -> None:
    base, tuned = planted_pair(torch.float32)
    broken = "model.layers.1.mlp.up_proj.weight"
    tuned[broken] = tuned[broken].clone()
    tuned[broken][3, 4] = float("inf")
    result = measure(tmp_path, base, tuned, [{"id": "rank"}])["rank"]
    assert broken not in result.groups["tensor"]
    assert [s.name for s in result.skipped] == [broken]
    assert result.fields["matrices"] == len(PLANTED) - 1
    assert result.fields["skipped"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"sample": "random"}, "sample: random needs sample_fraction"),
        ({"sample_fraction": 0.3}, "sample_fraction applies to sample: random only"),
        ({"max_matrices": 0}, "max_matrices must be at least 1"),
        ({"include": ["*norm*"]}, "no 2-D tensor was decomposed (5 tensors were not 2-D"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: dict[str, Any], message: str) -> None:
    base, tuned = planted_pair(torch.float32, {})
    outcome = run_checks(tmp_path, base, tuned, [{"id": "bad", **args}])["bad"]
    assert outcome.status is Status.ERROR and outcome.error_kind == "usage"
    assert message in outcome.message


def test_device_cuda_without_a_gpu(tmp_path: Path) -> None:
    base, tuned = planted_pair(torch.float32, {"lm_head.weight": 2})
    outcome = run_checks(tmp_path, base, tuned, [{"id": "gpu", "device": "cuda"}])["gpu"]
    if torch.cuda.is_available():
        assert outcome.result is not None and outcome.result.fields["device"] == "cuda"
        assert outcome.result.groups["tensor"]["lm_head.weight"]["rank"] == 2
    else:
        assert outcome.status is Status.ERROR and outcome.error_kind == "usage"
        assert "device: cuda, but torch sees no CUDA device" in outcome.message


def test_batcher_defers_and_matches_one_at_a_time() -> None:
    shapes = [(12, 20), (20, 12), (12, 20), (8, 8), (20, 12), (8, 8), (12, 20)]
    deltas = {
        f"w{i}": low_rank(m, n, rank=1 + i % 5, seed=i).float().numpy() for i, (m, n) in enumerate(shapes)
    }
    tolerance = RankTolerance("float32")
    single = SvdBatcher(tolerance)
    for name, delta in deltas.items():
        single.add(name, delta)
        assert name in single.done and single.pending_bytes == 0
    budget = 3 * 12 * 20 * 4  # about three pending matrices
    small, whole = SvdBatcher(tolerance, budget), SvdBatcher(tolerance, 1 << 30)
    for name, delta in deltas.items():
        small.add(name, delta)
        whole.add(name, delta)
        assert small.pending_bytes < budget
    assert not whole.done and whole.pending_bytes == sum(d.size * 4 for d in deltas.values())
    assert small.done  # some batch was full before the end
    small.flush()
    whole.flush()
    for name in deltas:
        expected = single.done[name]
        for batched in (small.done[name], whole.done[name]):
            assert batched.shape == expected.shape == tuple(deltas[name].shape)
            assert batched.rank == expected.rank == 1 + int(name[1:]) % 5
            assert batched.stable_rank == pytest.approx(expected.stable_rank, rel=1e-5)
            assert batched.effective_rank == pytest.approx(expected.effective_rank, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_update_matrix_never_writes_the_stored_tensors(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    base, tuned = (torch.randn(6, 5, generator=g).to(dtype) for _ in range(2))
    before = base.clone(), tuned.clone()
    expected = (tuned.double() - base.double()).float()
    on_device = _svd_torch.update_matrix(base, tuned, torch.device("cpu"), "float32")
    assert on_device.dtype == torch.float32 and torch.equal(on_device, expected)
    name = str(dtype).removeprefix("torch.")
    stored = [(t.view(torch.uint16) if dtype == torch.bfloat16 else t).numpy() for t in (base, tuned)]
    delta = update_matrix(stored[0], name, stored[1], name, "float32")
    assert delta.dtype == np.float32 and np.array_equal(delta, expected.numpy())
    assert torch.equal(base, before[0]) and torch.equal(tuned, before[1])


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_numpy_and_torch_decompositions_agree(precision: str) -> None:
    """The CPU path (numpy's LAPACK) gives torch's numbers within float tolerance."""
    shapes = [(12, 20), (20, 12), (16, 16), (8, 8)]
    deltas = {f"w{i}": low_rank(m, n, rank=1 + i, seed=i) for i, (m, n) in enumerate(shapes)}
    deltas["zero"] = torch.zeros(8, 8, dtype=torch.float64)
    deltas["noisy"] = low_rank(16, 16, rank=16, seed=9) * torch.logspace(0, -9, 16, dtype=torch.float64)
    tolerance = RankTolerance(precision)
    wide = getattr(torch, precision)
    numpy_side = SvdBatcher(tolerance, 1 << 30)
    torch_side = SvdBatcher(tolerance, 1 << 30, _svd_torch.torch_svdvals)
    for name, delta in deltas.items():
        numpy_side.add(name, delta.to(wide).numpy())
        torch_side.add(name, delta.to(wide))
    numpy_side.flush()
    torch_side.flush()
    rel = 1e-4 if precision == "float32" else 1e-10
    for name in deltas:
        ours, theirs = numpy_side.done[name], torch_side.done[name]
        assert ours.shape == theirs.shape
        assert ours.sigma_max == pytest.approx(theirs.sigma_max, rel=rel, abs=1e-30)
        assert ours.stable_rank == pytest.approx(theirs.stable_rank, rel=rel)
        assert ours.effective_rank == pytest.approx(theirs.effective_rank, rel=rel)
        assert abs(ours.rank - theirs.rank) <= (1 if name == "noisy" else 0)
    assert numpy_side.done["w2"].rank == 3 and numpy_side.done["zero"].rank == 0


def test_untouched_matrices_do_not_pull_the_headline_mean_down(tmp_path: Path) -> None:
    # Two of four 16-wide matrices untouched, two at rank 2 (12.5%): 12.5 over the changed ones,
    # 6.25 over all four.
    ranks = {
        "model.layers.0.self_attn.q_proj.weight": 2,
        "model.layers.0.self_attn.k_proj.weight": 0,
        "model.layers.1.self_attn.q_proj.weight": 2,
        "model.layers.1.self_attn.k_proj.weight": 0,
    }
    base, tuned = planted_pair(torch.float32, ranks)
    check = {"id": "rank", "device": "cpu", "include": list(ranks)}
    result = measure(tmp_path, base, tuned, [check])["rank"]
    assert result.value == result.fields["rank_pct_mean"] == pytest.approx(12.5)
    assert result.fields["rank_pct_mean_all"] == pytest.approx(6.25)
    assert result.fields["changed_matrices"] == 2 and result.fields["matrices"] == 4


def test_the_low_precision_note_says_effective_rank_is_not_robust(tmp_path: Path) -> None:
    # A rank-1 update 10x the bf16 rounding noise of a 256 x 256 matrix: effective rank ~1 in
    # float32, far above 1 once both sides are stored in bf16; stable rank stays near 1.
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(256, 256, generator=g) * 0.02
    update = torch.outer(torch.randn(256, generator=g), torch.randn(256, generator=g))
    tuned = weight + update * (0.016 / float(torch.linalg.matrix_norm(update, ord=2)))
    effective = {}
    for dtype in (torch.float32, torch.bfloat16):
        pair = ({"w": weight.to(dtype)}, {"w": tuned.to(dtype)})
        result = measure(tmp_path / str(dtype), *pair, [{"id": "rank", "device": "cpu"}])["rank"]
        effective[dtype] = num(result.groups["tensor"]["w"], "effective_rank")
        assert num(result.groups["tensor"]["w"], "stable_rank") < 1.5
    assert effective[torch.float32] < 1.01 and effective[torch.bfloat16] > 100
    (note,) = [note for note in result.notes if "16 bits or fewer" in note]
    assert "inflates effective rank" in note and "robust to it" not in note
