"""The fused compare engine equals the numpy path entry for entry (every field, mask and histogram)."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from sparsecheck._dtypes import STORAGE
from sparsecheck.metrics import _fused
from sparsecheck.metrics._equality import CHUNK, EqualityPolicy, PairComparison, compare_arrays

pytest.importorskip("sparsecheck_fused", reason="the optional fused engine is not installed")

FLOAT_DTYPES = ["bfloat16", "float16", "float32", "float64"]
POLICIES = [("exact", 0.0), ("atol", 1e-5), ("atol", 1e-2), ("rtol", 1e-3), ("rtol", 0.0), ("rtol", 0.5)]
# Share of moved entries per chunk: none, few (entries judged alone), many (whole chunk, and the
# next chunk skips the bits pass), all; and the last chunk partial.
DENSITIES = [0.0, 0.01, 0.6, 1.0, 0.02, 0.0, 0.9, 0.03, 0.5, 0.0, 1.0, 0.01]


def specials(dtype: str) -> np.ndarray:
    """Stored bits of NaNs with two payloads, ±inf, ±0, a subnormal and the largest finite."""
    width = STORAGE[dtype].itemsize * 8
    exp_bits = {"bfloat16": 8, "float16": 5, "float32": 8, "float64": 11}[dtype]
    mant = width - 1 - exp_bits
    inf = ((1 << exp_bits) - 1) << mant
    sign = 1 << (width - 1)
    quiet = inf | (1 << (mant - 1))
    values = [quiet | 1, quiet | 2, quiet, inf, inf | sign, 0, sign, 1, sign | 3, inf - 1, (inf - 1) | sign]
    return np.array(values, dtype=f"u{width // 8}")


def planted(dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A base/tuned pair of stored arrays over chunks of the DENSITIES, specials sprinkled in."""
    rng = np.random.default_rng(seed)
    n = CHUNK * len(DENSITIES) - 12345
    wide = np.float64 if dtype == "float64" else np.float32
    base = (rng.standard_normal(n) * 10.0 ** rng.integers(-5, 1, n)).astype(wide)
    step = rng.standard_normal(n) * 10.0 ** rng.integers(-7, -1, n)
    tuned = (base + step).astype(wide)
    moved = np.concatenate([rng.random(CHUNK) < d for d in DENSITIES])[:n]
    tuned = np.where(moved, tuned, base)
    a, b = to_storage(base, dtype), to_storage(tuned, dtype)
    ua, ub = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
    odd = specials(dtype)
    for chunk in range(len(DENSITIES)):
        at = min(chunk * CHUNK + int(rng.integers(0, CHUNK - 4 * odd.size)), n - 3 * odd.size)
        ua[at : at + odd.size * 3] = np.concatenate([odd, odd, rng.permutation(odd)])
        ub[at : at + odd.size * 3] = np.concatenate([odd, rng.permutation(odd), odd[::-1]])
    return a, b


def to_storage(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":  # truncation is fine: any bits are a bfloat16
        return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return values.astype(STORAGE[dtype])


def both(a: np.ndarray, b: np.ndarray, dtype: str, policy: EqualityPolicy, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    fused = compare_arrays(a, dtype, b, dtype, policy)
    with monkeypatch.context() as patch:
        patch.setenv(_fused.ENGINE_ENV, "numpy")
        assert _fused.engine() == "numpy"
        reference = compare_arrays(a, dtype, b, dtype, policy)
    return fused, reference


def assert_same(got: PairComparison, want: PairComparison) -> None:
    assert got.changed == want.changed
    assert got.moved == want.moved
    assert got.changed_if_bf16 == want.changed_if_bf16
    assert got.max_abs_delta == want.max_abs_delta
    assert np.array_equal(got.delta_histogram, want.delta_histogram)
    assert np.array_equal(got.packed, want.packed)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("policy", "tol"), POLICIES)
def test_fused_equals_numpy_over_sparse_dense_and_special_chunks(
    dtype: str, policy: str, tol: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _fused.engine() == "fused"
    a, b = planted(dtype, seed=FLOAT_DTYPES.index(dtype))
    got, want = both(a, b, dtype, EqualityPolicy(policy, tol), monkeypatch)
    assert want.changed > 0 and want.moved > want.changed // 2
    assert_same(got, want)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("policy", "tol"), POLICIES)
def test_fused_equals_numpy_on_random_bits(
    dtype: str, policy: str, tol: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any stored bits at all: NaNs, infs, subnormals; and pairs that share bits.
    rng = np.random.default_rng(7)
    width = STORAGE[dtype].itemsize
    n = 3 * CHUNK + 5
    a = rng.integers(0, 256, n * width, dtype=np.uint8).view(f"u{width}")
    b = np.where(rng.random(n) < 0.7, a, rng.integers(0, 256, n * width, dtype=np.uint8).view(f"u{width}"))
    a, b = a.view(STORAGE[dtype]), b.view(STORAGE[dtype])
    got, want = both(a, b, dtype, EqualityPolicy(policy, tol), monkeypatch)
    assert_same(got, want)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_fused_equals_numpy_on_equal_and_tiny_pairs(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = planted(dtype, seed=11)
    for x, y in ((a, a.copy()), (a[:1], b[:1]), (a[:13], b[:13]), (a[:0], b[:0])):
        got, want = both(x, y, dtype, EqualityPolicy("atol", 1e-5), monkeypatch)
        assert_same(got, want)


def test_other_dtypes_and_strided_arrays_go_through_numpy() -> None:
    packed, histogram = np.empty(1, np.uint8), np.zeros(1024, np.int64)
    ints = np.arange(8, dtype=np.int32)
    assert _fused.compare(ints, ints, "int32", "atol", 1e-5, False, packed, histogram) is None
    strided = np.arange(16, dtype=np.float32)[::2]
    assert _fused.compare(strided, strided, "float32", "atol", 1e-5, False, packed, histogram) is None
    # and compare_arrays still counts them (numpy path)
    assert compare_arrays(strided, "float32", strided + 1, "float32", EqualityPolicy("exact", 0)).changed == 8


def test_file_mapped_pairs_drop_pages_behind_and_count_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two file maps, several spans long: pages are dropped behind the pass as it goes.
    a, b = planted("bfloat16", seed=5)
    a, b = np.concatenate([a] * 3), np.concatenate([b] * 3)
    (tmp_path / "a").write_bytes(a.tobytes())
    (tmp_path / "b").write_bytes(b.tobytes())
    with open(tmp_path / "a", "rb") as fa, open(tmp_path / "b", "rb") as fb:
        map_a = mmap.mmap(fa.fileno(), 0, access=mmap.ACCESS_READ)
        map_b = mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ)
    mapped_a, mapped_b = np.frombuffer(map_a, np.uint16), np.frombuffer(map_b, np.uint16)
    assert _fused._file_mapped(mapped_a) and not _fused._file_mapped(a)
    got, want = both(mapped_a, mapped_b, "bfloat16", EqualityPolicy("atol", 1e-5), monkeypatch)
    assert_same(got, want)
    assert np.array_equal(mapped_a, a)  # the map still reads the file after its pages were dropped
