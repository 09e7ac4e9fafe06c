"""The equality policies against a straightforward torch reference (METRICS.md definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsecheck._dtypes import from_torch_dtype, round_to_bfloat16_bits
from sparsecheck.errors import UsageError
from sparsecheck.metrics import _equality as equality
from sparsecheck.metrics import _fused
from sparsecheck.metrics._equality import CHUNK, EqualityPolicy, compare_arrays, delta_quantile


@pytest.fixture(autouse=True, params=["fused", "numpy"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test against both compare engines (the fused one where it is installed)."""
    if request.param == "numpy":
        monkeypatch.setenv(_fused.ENGINE_ENV, "numpy")
    elif _fused.extension() is None:
        pytest.skip("the optional fused engine (native/sparsecheck-fused) is not installed")
    return str(request.param)


def stored(t: torch.Tensor) -> tuple[np.ndarray, str]:
    """A tensor as the reader hands it over: numpy storage plus dtype name."""
    name = from_torch_dtype(t.dtype)
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16), name
    return t.numpy(), name


def reference(a: torch.Tensor, b: torch.Tensor, policy: str, tol: float) -> torch.Tensor:
    """The definitions, spelled out in torch on full tensors.  Identical stored bits are
    unchanged under every policy (a NaN equals itself only then); a change to or from NaN or
    ±inf is changed under every policy."""
    wide = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    fa, fb = a.to(wide), b.to(wide)
    differs = fa != fb
    if a.dtype == b.dtype:
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        differs &= a.view(bits) != b.view(bits)
    if policy == "exact":
        return differs
    delta = (fa - fb).abs()
    nonfinite = differs & ~(fa.isfinite() & fb.isfinite())
    if policy == "atol":
        return (delta > tol) | nonfinite
    return (delta > tol * torch.maximum(fa.abs(), fb.abs())) | nonfinite


def run(a: torch.Tensor, b: torch.Tensor, policy: str, tol: float):  # type: ignore[no-untyped-def]
    sa, da = stored(a)
    sb, db = stored(b)
    return compare_arrays(sa, da, sb, db, EqualityPolicy(policy, tol))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize(("policy", "tol"), [("exact", 0.0), ("atol", 1e-5), ("atol", 1e-3), ("rtol", 1e-3)])
def test_policies_match_reference(dtype: torch.dtype, policy: str, tol: float) -> None:
    g = torch.Generator().manual_seed(0)
    base = (torch.randn(300, 70, generator=g) * 10 ** torch.randint(-5, 1, (300, 70), generator=g)).to(dtype)
    step = torch.randn(300, 70, generator=g) * 10 ** torch.randint(-7, -1, (300, 70), generator=g)
    keep = torch.rand(300, 70, generator=g) < 0.6
    tuned = torch.where(keep, base, (base.double() + step.double()).to(dtype))
    tuned[0, :4] = torch.tensor([0.0, -0.0, float("nan"), float("inf")], dtype=dtype)
    base[0, :4] = torch.tensor([-0.0, 0.0, float("nan"), float("inf")], dtype=dtype)
    got = run(base, tuned, policy, tol)
    want = reference(base, tuned, policy, tol)
    assert np.array_equal(got.mask, want.numpy())
    assert got.changed == int(want.sum())
    assert got.moved == int(reference(base, tuned, "exact", 0).sum())


_QUIET_NAN = {
    torch.bfloat16: (torch.int16, 0x7FC0),
    torch.float16: (torch.int16, 0x7E00),
    torch.float32: (torch.int32, 0x7FC00000),
    torch.float64: (torch.int64, 0x7FF8000000000000),
}


def nan_bits(dtype: torch.dtype, payload: int) -> torch.Tensor:
    """A NaN of ``dtype`` whose stored bits carry ``payload``."""
    ints, quiet = _QUIET_NAN[dtype]
    return torch.tensor([quiet | payload], dtype=ints).view(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize(("policy", "tol"), [("exact", 0.0), ("atol", 1e-5), ("rtol", 1e-3)])
def test_policies_match_reference_across_sparse_and_dense_chunks(
    dtype: torch.dtype, policy: str, tol: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks without changes, with few (entries widened alone), with many (whole chunk, then the
    # next chunk skips the bits comparison), and NaN, inf and ±0 pairs in chunks of every kind.
    monkeypatch.setattr(equality, "CHUNK", 256)
    g = torch.Generator().manual_seed(3)
    densities = [0.0, 0.01, 0.6, 1.0, 0.02, 0.0, 0.9, 0.03, 0.5, 0.0, 1.0, 0.01]
    n = 256 * len(densities)
    base = (torch.randn(n, generator=g) * 10 ** torch.randint(-4, 1, (n,), generator=g)).to(dtype)
    step = torch.randn(n, generator=g) * 10 ** torch.randint(-7, -1, (n,), generator=g)
    moved = torch.cat([torch.rand(256, generator=g) < d for d in densities])
    tuned = torch.where(moved, (base.double() + step.double()).to(dtype), base)
    for chunk in (1, 3, 4, 5, 7, 10):
        at = chunk * 256 + int(torch.randint(0, 240, (1,), generator=g))
        base[at : at + 6] = torch.cat(
            [
                nan_bits(dtype, 1),
                nan_bits(dtype, 1),
                torch.tensor([float("inf"), 0.0, -0.0, 1.0], dtype=dtype),
            ]
        )
        tuned[at : at + 6] = torch.cat(
            [
                nan_bits(dtype, 1),
                nan_bits(dtype, 2),
                torch.tensor([float("inf"), -0.0, 0.0, -float("inf")], dtype=dtype),
            ]
        )
    got = run(base, tuned, policy, tol)
    want = reference(base, tuned, policy, tol)
    assert np.array_equal(got.mask, want.numpy())
    assert got.changed == int(want.sum())
    assert got.moved == int(reference(base, tuned, "exact", 0).sum())
    assert got.max_abs_delta == float("inf")  # the 1.0 → -inf entries


def test_exact_and_atol_disagree_on_tiny_weights() -> None:
    # bf16 weights near 1e-3 move by less than 1e-5 per step of precision: exact sees the
    # change, atol 1e-5 does not.
    base = torch.full((1000,), 1e-3, dtype=torch.bfloat16)
    tuned = base.clone()
    tuned[:250] = torch.nextafter(base[:250].float(), torch.tensor(1.0)).to(torch.bfloat16)
    tuned[:250] = (base[:250].float() + 4e-6).to(torch.bfloat16)
    assert (tuned[:250] != base[:250]).all()
    assert run(base, tuned, "exact", 0).changed == 250
    assert run(base, tuned, "atol", 1e-5).changed == 0


def test_nan_bits() -> None:
    nan_a = torch.tensor([0x7FC00000], dtype=torch.int32).view(torch.float32)
    nan_b = torch.tensor([0x7FC00001], dtype=torch.int32).view(torch.float32)
    assert run(nan_a, nan_a.clone(), "exact", 0).changed == 0
    assert run(nan_a, nan_b, "exact", 0).changed == 1
    # a weight that became NaN is changed under every policy
    for policy in ("atol", "rtol"):
        assert run(torch.tensor([1.0]), nan_a, policy, 1e9).changed == 1


def test_mixed_dtypes_compare_in_float32() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(5000, generator=g)
    tuned = base.to(torch.bfloat16)  # rounding moves most entries by more than 1e-5
    got = run(base, tuned, "atol", 1e-5)
    want = (base - tuned.float()).abs() > 1e-5
    assert got.changed == int(want.sum())
    assert got.dtypes == ("float32", "bfloat16")


@pytest.mark.parametrize(("policy", "tol"), [("exact", 0.0), ("atol", 1e-5), ("rtol", 1e-3)])
def test_mixed_dtypes_with_nan_inf_and_zeros_match_reference(
    policy: str, tol: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(equality, "CHUNK", 128)
    g = torch.Generator().manual_seed(4)
    base = torch.randn(1000, generator=g) * 10 ** torch.randint(-6, 1, (1000,), generator=g)
    tuned = base.to(torch.bfloat16)
    tuned[::3] = base[::3].to(torch.bfloat16)  # a float32 value that bf16 holds exactly stays equal
    base[::3] = tuned[::3].float()
    for at in (5, 300, 700):  # in a chunk after dense ones, too
        base[at : at + 5] = torch.tensor([float("nan"), float("nan"), float("inf"), 0.0, 1.0])
        tuned[at : at + 5] = torch.tensor(
            [float("nan"), 1.0, float("inf"), -0.0, float("-inf")], dtype=torch.bfloat16
        )
    got = run(base, tuned, policy, tol)
    want = reference(base, tuned, policy, tol)
    assert np.array_equal(got.mask, want.numpy())
    assert got.moved == int(reference(base, tuned, "exact", 0).sum())


def test_chunk_boundaries_and_sparsity_if_bf16() -> None:
    g = torch.Generator().manual_seed(2)
    n = 2 * CHUNK + 12345
    base = torch.randn(n, generator=g)
    tuned = base.clone()
    idx = torch.randperm(n, generator=g)[: n // 10]
    tuned[idx] += torch.randn(idx.numel(), generator=g) * 1e-3
    got = run(base, tuned, "atol", 1e-5)
    assert got.changed == int(((base - tuned).abs() > 1e-5).sum())
    ref_bf16 = base.to(torch.bfloat16) != tuned.to(torch.bfloat16)
    assert got.changed_if_bf16 == int(ref_bf16.sum())
    deltas = (base - tuned).abs()
    nonzero = deltas[deltas > 0].double().numpy()
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(nonzero, q))
        approx = delta_quantile(got.delta_histogram, q)
        assert exact / 1.25 <= approx <= exact * 1.25
    assert got.max_abs_delta == pytest.approx(float(deltas.max()), rel=1e-6)


def test_bf16_pair_has_no_bf16_rounding_field() -> None:
    a = torch.randn(100).to(torch.bfloat16)
    assert run(a, a.clone(), "atol", 1e-5).changed_if_bf16 is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize(("policy", "tol"), [("exact", 0.0), ("atol", 1e-5), ("rtol", 1e-3), ("rtol", 0.5)])
def test_change_to_or_from_a_non_finite_value_is_changed_under_every_policy(
    dtype: torch.dtype, policy: str, tol: float
) -> None:
    inf, nan = float("inf"), float("nan")
    base = torch.tensor([inf, 0.25, inf, -inf, 1.0, nan, inf, 2.0], dtype=dtype)
    tuned = torch.tensor([-inf, inf, 0.25, 3.0, nan, 1.0, inf, 2.0], dtype=dtype)
    got = run(base, tuned, policy, tol)
    assert got.mask.tolist() == [True] * 6 + [False, False]
    assert got.max_abs_delta == inf


def test_abs_delta_max_reports_inf_and_quantiles_leave_non_finite_out() -> None:
    base = torch.tensor([1.0, 1.0, 1.0, 1.0])
    tuned = torch.tensor([float("inf"), 1.001, 1.001, 1.0])
    got = run(base, tuned, "atol", 1e-5)
    assert got.max_abs_delta == float("inf")
    median = delta_quantile(got.delta_histogram, 0.5)
    assert 0.001 / 1.25 <= median <= 0.001 * 1.25  # of the two finite |Δ| only
    # unmoved infinities (inf - inf is NaN) neither count as moved nor raise the max
    same = torch.tensor([float("inf"), -float("inf"), 1.0])
    moved = run(same, torch.tensor([float("inf"), -float("inf"), 1.5]), "atol", 1e-5)
    assert (moved.moved, moved.max_abs_delta) == (1, 0.5)


@pytest.mark.parametrize("tol", [float("nan"), float("inf"), -1.0])
def test_non_finite_or_negative_tolerance_is_rejected(tol: float) -> None:
    with pytest.raises(UsageError, match="tol must be a finite number >= 0"):
        EqualityPolicy.from_args({"policy": "atol", "tol": tol})


def _bf16_nearest_reference(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even of float64 ``x`` to bfloat16 bits, by search among every finite
    positive bfloat16 value (and 2^128 standing for inf), ties to the even bit pattern."""
    positive = np.arange(0x7F81, dtype=np.uint32)  # 0 .. max finite, then inf
    values = (positive << 16).view(np.float32).astype(np.float64)
    values[-1] = 2.0**128
    magnitude = np.abs(x)
    hi = np.minimum(np.searchsorted(values, magnitude, side="left"), values.size - 1)
    lo = np.maximum(hi - 1, 0)
    exact = values[hi] == magnitude
    down = (magnitude - values[lo] < values[hi] - magnitude) | (
        (magnitude - values[lo] == values[hi] - magnitude) & (positive[lo] % 2 == 0)
    )
    chosen = np.where(exact, positive[hi], np.where(down, positive[lo], positive[hi]))
    chosen = np.where(magnitude >= 2.0**128, 0x7F80, chosen)
    return (chosen | np.where(np.signbit(x), 0x8000, 0)).astype(np.uint16)


def test_float64_rounds_to_bfloat16_directly_not_through_float32() -> None:
    # Just above (and below) a bf16 midpoint by less than half a float32 step: through float32
    # it becomes the midpoint, and ties-to-even picks the wrong neighbour.
    g = np.random.default_rng(7)
    bf16 = g.integers(0x0001, 0x7F7F, 20_000).astype(np.uint32)
    midpoints = ((bf16 << 16) | 0x8000).view(np.float32).astype(np.float64)
    nudge = midpoints * 2.0**-30 * g.choice([-1.0, 1.0], midpoints.size)
    tricky = np.concatenate([midpoints + nudge, -(midpoints + nudge), midpoints])
    tricky = np.concatenate([tricky, [0.0, -0.0, 1e-300, -1e-300, 3.3961e38, 3.4e38, 1e300, np.inf]])
    with np.errstate(over="ignore"):
        through_float32 = round_to_bfloat16_bits(tricky.astype(np.float32))
    got = round_to_bfloat16_bits(tricky)
    want = _bf16_nearest_reference(tricky)
    assert np.array_equal(got, want)
    assert np.count_nonzero(through_float32 != want) > 10_000  # the pair is adversarial indeed
    # A float64 pair whose tuned side is the base rounded to bf16: nothing changes once both are.
    stored_bf16 = (want.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    pair = equality.compare_arrays(tricky, "float64", stored_bf16, "float64", EqualityPolicy("exact", 0))
    assert pair.changed_if_bf16 == 0 and pair.moved > 40_000
