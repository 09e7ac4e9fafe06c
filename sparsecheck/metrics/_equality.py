"""Equality policies and the changed-mask of one tensor pair (METRICS.md, "Changed or unchanged").

A tensor pair is compared a cache-sized chunk at a time, so no full-size float temporaries are
made; stored bits decide where both sides are equal.  One :class:`PairComparison` per tensor pair
and policy is shared (through ``TensorGroup.memo``) by every metric of a pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsecheck._dtypes import FLOATS, PRECISION, bits, compute_dtype, round_to_bfloat16_bits, widen
from sparsecheck.errors import UsageError
from sparsecheck.metrics import _fused
from sparsecheck.metrics._api import Param, TensorGroup

POLICIES = ("exact", "atol", "rtol")
DEFAULT_TOLERANCE = {"exact": 0.0, "atol": 1e-5, "rtol": 1e-3}
#: Entries per chunk of float work (its buffers stay in the CPU cache).
CHUNK = 1 << 16
#: The |Δ| histogram counts every moved entry of a chunk with at most HIST_SAMPLES of them, and
#: about HIST_SAMPLES evenly spaced ones (counts scaled back) of a chunk with more: its
#: quantiles are approximate anyway, and a full count would be the costliest pass.
HIST_SAMPLES = 1 << 8
#: A chunk where at most 1/SPARSE of the entries' bits differ has only those entries widened.
SPARSE = 32
#: |Δ| histogram: the float32 exponent and two mantissa bits (bins at most 25% wide).
HIST_SHIFT = 21
HIST_BINS = 1 << (31 - HIST_SHIFT)

POLICY_PARAMS: tuple[Param, ...] = (
    Param(
        "policy",
        "choice",
        "when an entry counts as changed: exact, atol (|Δ| > tol) or rtol (|Δ| > tol·max(|a|,|b|))",
        "atol",
        POLICIES,
    ),
    Param("tol", "float", "the policy's tolerance (default: atol 1e-5, rtol 1e-3, exact 0)", None),
)


@dataclass(frozen=True)
class EqualityPolicy:
    """``exact``, ``atol`` or ``rtol`` with its tolerance."""

    name: str
    tol: float

    def __post_init__(self) -> None:
        check_tolerance(self.tol, "tol")

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> EqualityPolicy:
        name = args.get("policy", "atol")
        tol = args.get("tol")
        return cls(name, DEFAULT_TOLERANCE[name] if tol is None else float(tol))

    def describe(self) -> str:
        return "exact" if self.name == "exact" else f"{self.name} tol={self.tol:g}"


def check_tolerance(tol: float, what: str) -> None:
    """Raise a :class:`UsageError` naming ``what`` unless ``tol`` is a finite number >= 0
    (a NaN tolerance would call every entry unchanged)."""
    if not (math.isfinite(tol) and tol >= 0):
        raise UsageError(f"{what} must be a finite number >= 0, got {tol}")


@dataclass
class PairComparison:
    """How one tensor pair differs under one policy."""

    numel: int
    #: Entries changed under the policy.
    changed: int
    #: Entries whose stored values differ at all (the exact policy's count).
    moved: int
    #: Entries that differ once both sides are rounded to bfloat16 (None when neither side is
    #: stored wider than bfloat16).
    changed_if_bf16: int | None
    #: The largest |Δ|; inf when an entry changed to or from a non-finite value (NaN or ±inf).
    max_abs_delta: float
    #: Counts of finite nonzero |Δ| in bins at most 25% wide (see :func:`delta_quantile`).
    delta_histogram: np.ndarray
    #: The changed-mask of the flattened tensor, one bit per entry (``np.packbits``, little bit
    #: order): an eighth of a bool mask to keep or to send between processes.
    packed: np.ndarray
    shape: tuple[int, ...]
    dtypes: tuple[str, str]

    @property
    def mask(self) -> np.ndarray:
        """True where changed, in the tensor's shape (unpacked on each access)."""
        bits = np.unpackbits(self.packed, count=self.numel, bitorder="little")
        return bits.view(np.bool_).reshape(self.shape)


def compare(group: TensorGroup, base: str, tuned: str, policy: EqualityPolicy) -> PairComparison:
    """The comparison of ``group``'s tensor in ``base`` and ``tuned``, computed once per pass."""
    if "complex64" in (group.meta(base).dtype, group.meta(tuned).dtype):
        raise UsageError(f"tensor {group.name!r}: complex64 entries have no real |Δ| to compare; exclude it")
    return group.memo(
        ("compare", base, tuned, policy),
        lambda: compare_arrays(
            group.array(base), group.meta(base).dtype, group.array(tuned), group.meta(tuned).dtype, policy
        ),
    )


def chunk_spans(size: int) -> list[slice]:
    return [slice(start, start + CHUNK) for start in range(0, size, CHUNK)]


def moved_deltas(a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str) -> Iterator[np.ndarray]:
    """|Δ| of the entries that differ as numbers (NaN for a NaN), in the compute dtype, a chunk
    of :data:`CHUNK` entries of stored arrays ``a`` (base) and ``b`` (tuned) at a time.

    Bits are compared first; only the entries whose bits differ are widened.
    """
    same_dtype = a_dtype == b_dtype
    is_float = a_dtype in FLOATS or b_dtype in FLOATS
    wide = compute_dtype(a_dtype, b_dtype) if is_float else np.dtype(np.float64)
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    for span in chunk_spans(flat_a.size):
        ca, cb = flat_a[span], flat_b[span]
        if same_dtype:
            where = np.flatnonzero(bits(ca) != bits(cb))
            ca, cb = ca[where], cb[where]
        values_a, values_b = widen(ca, a_dtype, wide), widen(cb, b_dtype, wide)
        delta = np.abs(values_a - values_b)
        # Integer bits that differ are values that differ; NaN != NaN, and two NaNs reach here
        # only with different bits (or different dtypes); +0 and -0 do not differ.
        yield delta if same_dtype and not is_float else delta[values_a != values_b]


def compare_arrays(
    a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str, policy: EqualityPolicy
) -> PairComparison:
    """Compare stored arrays ``a`` (base) and ``b`` (tuned) entry by entry, chunk by chunk.

    A chunk where at most 1/SPARSE of the entries' stored bits differ has only those entries
    widened; one where more differ is widened whole, into buffers that stay in the CPU cache
    (measured faster from about that share on), and after such a chunk the next goes straight
    to the whole-chunk path, skipping the comparison of bits unless a NaN turns up.  Same-dtype
    float pairs go through the fused engine where it is installed (:mod:`._fused`), which does
    the same in one compiled pass per chunk, with the same results.
    """
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    packed = np.empty((flat_a.size + 7) // 8, dtype=np.uint8)
    histogram = np.zeros(HIST_BINS, dtype=np.int64)
    bf16_check = _bf16_check(a_dtype, b_dtype)
    result = None
    if a_dtype == b_dtype:
        result = _fused.compare(
            flat_a, flat_b, a_dtype, policy.name, policy.tol, bf16_check, packed, histogram
        )
    if result is None:
        counts = _Counts(policy, a_dtype, b_dtype, histogram)
        hit = np.empty(min(CHUNK, flat_a.size), dtype=np.bool_)
        for span in chunk_spans(flat_a.size):
            out = hit[: min(span.stop, flat_a.size) - span.start]
            counts.add(flat_a[span], flat_b[span], out)
            start = span.start // 8
            packed[start : start + (out.size + 7) // 8] = np.packbits(out, bitorder="little")
        result = _fused.FusedCounts(
            counts.changed, counts.moved, counts.changed_if_bf16, counts.max_abs_delta
        )
    return PairComparison(
        numel=int(flat_a.size),
        changed=result.changed,
        moved=result.moved,
        changed_if_bf16=result.changed_if_bf16 if bf16_check else None,
        max_abs_delta=result.max_abs_delta,
        delta_histogram=histogram,
        packed=packed,
        shape=tuple(a.shape),
        dtypes=(a_dtype, b_dtype),
    )


def _bf16_check(a_dtype: str, b_dtype: str) -> bool:
    """Whether a float side is stored wider than bfloat16 (then the bf16-rounded count is kept)."""
    is_float = a_dtype in FLOATS or b_dtype in FLOATS
    return is_float and max(PRECISION.get(a_dtype, 64), PRECISION.get(b_dtype, 64)) > PRECISION["bfloat16"]


class _Counts:
    """The running counts of one tensor pair's comparison, and its scratch buffers."""

    def __init__(self, policy: EqualityPolicy, a_dtype: str, b_dtype: str, histogram: np.ndarray) -> None:
        self.policy, self.a_dtype, self.b_dtype = policy, a_dtype, b_dtype
        self.same_dtype = a_dtype == b_dtype
        is_float = a_dtype in FLOATS or b_dtype in FLOATS
        self.integer = self.same_dtype and not is_float
        self.wide = compute_dtype(a_dtype, b_dtype) if is_float else np.dtype(np.float64)
        self.bf16_check = _bf16_check(a_dtype, b_dtype)
        self.changed = self.moved = self.changed_if_bf16 = 0
        self.max_abs_delta = 0.0
        self.histogram = histogram
        self.values = (np.empty(CHUNK, dtype=self.wide), np.empty(CHUNK, dtype=self.wide))
        self.delta = np.empty(CHUNK, dtype=self.wide)
        self.differ = np.empty(CHUNK, dtype=np.bool_)
        self.near = np.empty(CHUNK, dtype=np.bool_)
        #: Whether the last chunk had many moved entries: the next goes straight to the whole-
        #: chunk path, without comparing bits first.
        self.dense = False

    def add(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """Count one chunk of flat stored arrays; ``out`` gets True where changed."""
        if self.same_dtype and not self.dense:
            np.not_equal(bits(a), bits(b), out=out)
            candidates = int(np.count_nonzero(out))
            if candidates == 0:
                return
            if candidates <= a.size // SPARSE:
                where = np.flatnonzero(out)
                hit = np.empty(where.size, dtype=np.bool_)
                self._judge(a[where], b[where], hit, bits_all_differ=True)
                out[where[~hit]] = False
                return
        self.dense = self._judge(a, b, out, bits_all_differ=False) > a.size // SPARSE

    def _judge(self, a: np.ndarray, b: np.ndarray, hit: np.ndarray, bits_all_differ: bool) -> int:
        """Count aligned stored entries ``a`` and ``b`` (a chunk, or only entries whose bits
        differ); ``hit`` gets True where changed.  Returns the entries that moved."""
        n = a.size
        values_a = widen(a, self.a_dtype, self.wide, self.values[0])
        values_b = widen(b, self.b_dtype, self.wide, self.values[1])
        delta = self.delta[:n]
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, which differs
            np.subtract(values_a, values_b, out=delta)
        np.abs(delta, out=delta)
        largest = float(delta.max())
        # Entries that differ as numbers are those with |Δ| != 0 (x - y == 0 only when x == y:
        # +0 and -0 do not differ), unless a NaN is about (it differs, unless both sides store
        # the same bits) or the entries are integers (distinct ones may round to one float64).
        nan_free = largest == largest and not self.integer
        if nan_free:
            differ = np.not_equal(delta, 0, out=self.differ[:n])
        else:
            differ = self._differ(a, b, values_a, values_b, bits_all_differ)
        moved = int(np.count_nonzero(differ))
        if moved == 0:
            hit[...] = False
            return 0
        if self.policy.name == "exact":
            np.copyto(hit, differ)
        else:
            bound: float | np.ndarray = self.policy.tol
            if self.policy.name == "rtol":
                with np.errstate(invalid="ignore", over="ignore"):
                    bound = self.policy.tol * np.maximum(np.abs(values_a), np.abs(values_b))
            if nan_free:
                np.greater(delta, bound, out=hit)
            else:  # changed: differ and not |Δ| <= bound (so a NaN |Δ| is changed)
                near = self.near[:n]
                np.less_equal(delta, bound, out=near)
                np.logical_not(near, out=near)
                np.logical_and(differ, near, out=hit)
            if not np.isfinite(largest):
                # A change to or from NaN or ±inf is changed under every policy (under rtol
                # the bound tol·inf would call inf → -inf unchanged).
                hit |= differ & ~(np.isfinite(values_a) & np.isfinite(values_b))
        self.changed += int(np.count_nonzero(hit))
        self.moved += moved
        self._spread(delta, largest, moved, differ)
        if self.bf16_check:
            bf16_a, bf16_b = round_to_bfloat16_bits(values_a), round_to_bfloat16_bits(values_b)
            # Compared as numbers: +0 and -0 (also tiny values rounded to zero) are equal.
            both_zero = ((bf16_a | bf16_b) & 0x7FFF) == 0
            self.changed_if_bf16 += int(np.count_nonzero((bf16_a != bf16_b) & ~both_zero))
        return moved

    def _differ(
        self, a: np.ndarray, b: np.ndarray, values_a: np.ndarray, values_b: np.ndarray, bits_all_differ: bool
    ) -> np.ndarray:
        """Where entries differ as numbers, by the rule with bits (for NaNs and integers)."""
        n = a.size
        differ, delta = self.differ[:n], self.delta[:n]
        if not self.same_dtype:
            np.not_equal(values_a, values_b, out=differ)
        elif self.integer:
            np.not_equal(bits(a), bits(b), out=differ)
        else:
            np.not_equal(delta, 0, out=differ)
            if not bits_all_differ:
                differ &= bits(a) != bits(b)
        return differ

    def _spread(self, delta: np.ndarray, largest: float, moved: int, differ: np.ndarray) -> None:
        """Add the largest |Δ| (inf for a NaN: a change to or from NaN is unbounded) and the
        histogram of the moved entries' finite |Δ| (``differ``)."""
        if not np.isfinite(largest):  # the NaN may be an unmoved entry's (inf - inf, same bits)
            moved_delta = delta[differ]
            largest = math.inf if np.isnan(moved_delta).any() else float(moved_delta.max(initial=0.0))
        self.max_abs_delta = max(self.max_abs_delta, largest)
        if moved <= HIST_SAMPLES:
            sample, weight = delta[np.flatnonzero(differ)], 1
        else:  # every stride-th entry (unmoved ones land in bin 0); odd, against aliasing
            weight = (moved // HIST_SAMPLES) | 1
            sample = delta[::weight]
        top = sample.astype(np.float32).view(np.uint32)
        top >>= HIST_SHIFT
        top &= HIST_BINS - 1
        histogram = np.bincount(top, minlength=HIST_BINS)
        histogram[0] = 0  # |Δ| = 0 (+0 vs -0) and float32 subnormals
        histogram[_HIST_NONFINITE:] = 0  # inf and NaN
        self.histogram += histogram * weight


#: The first histogram bin of inf and NaN (float32 exponent all ones).
_HIST_NONFINITE = 0x7F800000 >> HIST_SHIFT


def delta_quantile(histogram: np.ndarray, q: float) -> float:
    """Approximate quantile ``q`` of the finite nonzero |Δ| counted in ``histogram`` (within
    ±12%); changes to or from NaN or ±inf are left out (``max_abs_delta`` shows them as inf)."""
    total = int(histogram.sum())
    if total == 0:
        return 0.0
    index = int(np.searchsorted(np.cumsum(histogram), q * total, side="left"))
    low = np.array([index << HIST_SHIFT], dtype=np.uint32).view(np.float32)[0]
    high = np.array([(index + 1) << HIST_SHIFT], dtype=np.uint32).view(np.float32)[0]
    return float(np.sqrt(float(low) * float(high)))
