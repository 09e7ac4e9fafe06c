"""Equality policies and the changed-mask of one tensor pair (METRICS.md, "Changed or unchanged").

Bits are compared first, on integer views; float work happens only on the entries whose bits
differ, in chunks, so no full-size float temporaries are made.  One :class:`PairComparison`
per tensor pair and policy is shared (through ``TensorGroup.memo``) by every metric of a pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsecheck._dtypes import FLOATS, PRECISION, bits, compute_dtype, round_to_bfloat16_bits, widen
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Param, TensorGroup

POLICIES = ("exact", "atol", "rtol")
DEFAULT_TOLERANCE = {"exact": 0.0, "atol": 1e-5, "rtol": 1e-3}
#: Entries per chunk of float work.
CHUNK = 1 << 20
#: The |Δ| histogram takes every HIST_STRIDE-th candidate of chunks with more candidates than
#: HIST_SAMPLED (counts scaled back): its quantiles are approximate anyway, and it is the
#: costliest part of the per-candidate work.
HIST_STRIDE = 4
HIST_SAMPLED = 1 << 14
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

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> EqualityPolicy:
        name = args.get("policy", "atol")
        tol = args.get("tol")
        tol = DEFAULT_TOLERANCE[name] if tol is None else float(tol)
        if tol < 0:
            raise UsageError(f"tol must be >= 0, got {tol}")
        return cls(name, tol)

    def describe(self) -> str:
        return "exact" if self.name == "exact" else f"{self.name} tol={self.tol:g}"


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
    max_abs_delta: float
    #: Counts of nonzero |Δ| in bins at most 25% wide (see :func:`delta_quantile`).
    delta_histogram: np.ndarray
    #: True where changed, in the tensor's shape.
    mask: np.ndarray
    dtypes: tuple[str, str]


def compare(group: TensorGroup, base: str, tuned: str, policy: EqualityPolicy) -> PairComparison:
    """The comparison of ``group``'s tensor in ``base`` and ``tuned``, computed once per pass."""
    return group.memo(
        ("compare", base, tuned, policy),
        lambda: compare_arrays(
            group.array(base), group.meta(base).dtype, group.array(tuned), group.meta(tuned).dtype, policy
        ),
    )


@dataclass
class CandidateChunk:
    """The entries of one chunk of a tensor pair that may differ, with their values widened."""

    #: The chunk's place in the flattened tensor.
    span: slice
    #: The candidates' positions in the chunk: entries whose stored bits differ (every entry,
    #: ``slice(None)``, when the two sides are stored in different dtypes).
    where: np.ndarray | slice
    #: The candidates' values in the compute dtype (float64 for integer tensors).
    a: np.ndarray
    b: np.ndarray
    #: |a - b|, and where the values differ as numbers (+0 and -0 do not; NaN always does).
    delta: np.ndarray
    differ: np.ndarray


def chunk_candidates(
    a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str, span: slice, out: np.ndarray | None = None
) -> CandidateChunk:
    """The candidates of ``span`` of flat stored arrays ``a`` (base) and ``b`` (tuned).

    Bits are compared first (into ``out`` when given: True where the bits differ); only those
    entries are widened, so no full-size float temporaries are made.
    """
    same_dtype = a_dtype == b_dtype
    is_float = a_dtype in FLOATS or b_dtype in FLOATS
    wide = compute_dtype(a_dtype, b_dtype) if is_float else np.dtype(np.float64)
    ca, cb = a[span], b[span]
    where: np.ndarray | slice = slice(None)
    if same_dtype:
        where = np.flatnonzero(np.not_equal(bits(ca), bits(cb), out=out))
        ca, cb = ca[where], cb[where]
    values_a, values_b = widen(ca, a_dtype, wide), widen(cb, b_dtype, wide)
    delta = np.abs(values_a - values_b)
    # Integer bits that differ are values that differ; NaN != NaN, and two NaNs reach here
    # only with different bits (or different dtypes).
    differ = np.ones(delta.shape, dtype=np.bool_) if same_dtype and not is_float else values_a != values_b
    return CandidateChunk(span, where, values_a, values_b, delta, differ)


def chunk_spans(size: int) -> list[slice]:
    return [slice(start, start + CHUNK) for start in range(0, size, CHUNK)]


def candidate_chunks(a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str) -> Iterator[CandidateChunk]:
    """Walk flat stored arrays ``a`` and ``b`` in chunks of :data:`CHUNK` entries."""
    for span in chunk_spans(a.size):
        yield chunk_candidates(a, a_dtype, b, b_dtype, span)


@dataclass
class _ChunkCounts:
    changed: int
    moved: int
    changed_if_bf16: int
    max_abs_delta: float
    histogram: np.ndarray


def compare_arrays(
    a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str, policy: EqualityPolicy
) -> PairComparison:
    """Compare stored arrays ``a`` (base) and ``b`` (tuned) entry by entry, chunk by chunk.

    (Chunks on a thread pool were measured no faster: the nonzero/gather/bincount steps that
    dominate hold the GIL.)
    """
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    mask = np.empty(flat_a.shape, dtype=np.bool_)
    bf16_check = (a_dtype in FLOATS or b_dtype in FLOATS) and max(
        PRECISION.get(a_dtype, 64), PRECISION.get(b_dtype, 64)
    ) > PRECISION["bfloat16"]

    parts = [
        _compare_chunk(flat_a, a_dtype, flat_b, b_dtype, span, policy, mask, bf16_check)
        for span in chunk_spans(flat_a.size)
    ]
    histogram = np.zeros(HIST_BINS, dtype=np.int64)
    for part in parts:
        histogram += part.histogram
    return PairComparison(
        numel=int(flat_a.size),
        changed=sum(p.changed for p in parts),
        moved=sum(p.moved for p in parts),
        changed_if_bf16=sum(p.changed_if_bf16 for p in parts) if bf16_check else None,
        max_abs_delta=max((p.max_abs_delta for p in parts), default=0.0),
        delta_histogram=histogram,
        mask=mask.reshape(a.shape),
        dtypes=(a_dtype, b_dtype),
    )


def _compare_chunk(
    a: np.ndarray,
    a_dtype: str,
    b: np.ndarray,
    b_dtype: str,
    span: slice,
    policy: EqualityPolicy,
    mask: np.ndarray,
    bf16_check: bool,
) -> _ChunkCounts:
    out = mask[span]
    chunk = chunk_candidates(a, a_dtype, b, b_dtype, span, out if a_dtype == b_dtype else None)
    hit = _changed(policy, chunk.a, chunk.b, chunk.delta, chunk.differ)
    changed = int(np.count_nonzero(hit))
    if isinstance(chunk.where, slice):
        out[...] = hit
    elif changed != hit.size:  # candidates whose bits differ but which did not change
        out[chunk.where[~hit]] = False
    changed_bf16 = 0
    if bf16_check:
        bf16_a, bf16_b = round_to_bfloat16_bits(chunk.a), round_to_bfloat16_bits(chunk.b)
        # Compared as numbers: +0 and -0 (also tiny values rounded to zero) are equal.
        both_zero = ((bf16_a | bf16_b) & 0x7FFF) == 0
        changed_bf16 = int(np.count_nonzero((bf16_a != bf16_b) & ~both_zero))
    return _ChunkCounts(
        changed, int(np.count_nonzero(chunk.differ)), changed_bf16, *_delta_spread(chunk.delta)
    )


def _delta_spread(delta: np.ndarray) -> tuple[float, np.ndarray]:
    """The largest finite |Δ| and the histogram of the nonzero finite ones."""
    if not delta.size:
        return 0.0, np.zeros(HIST_BINS, dtype=np.int64)
    largest = float(delta.max())
    if not np.isfinite(largest):
        largest = float(delta[np.isfinite(delta)].max(initial=0.0))
    stride = HIST_STRIDE if delta.size > HIST_SAMPLED else 1
    top = delta[::stride].astype(np.float32).view(np.uint32)
    top >>= HIST_SHIFT
    top &= HIST_BINS - 1
    histogram = np.bincount(top, minlength=HIST_BINS) * stride
    histogram[0] = 0  # |Δ| = 0 (+0 vs -0) and float32 subnormals
    histogram[_HIST_NONFINITE:] = 0  # inf and NaN
    return largest, histogram


#: The first histogram bin of inf and NaN (float32 exponent all ones).
_HIST_NONFINITE = 0x7F800000 >> HIST_SHIFT


def _changed(
    policy: EqualityPolicy, a: np.ndarray, b: np.ndarray, delta: np.ndarray, differ: np.ndarray
) -> np.ndarray:
    """Which of the candidate entries count as changed; a NaN on either side that differs
    from the other side always does (a broken weight is never 'unchanged')."""
    if policy.name == "exact":
        return differ
    nan = np.isnan(delta) & differ
    bound = policy.tol if policy.name == "atol" else policy.tol * np.maximum(np.abs(a), np.abs(b))
    changed: np.ndarray = (delta > bound) | nan
    return changed


def delta_quantile(histogram: np.ndarray, q: float) -> float:
    """Approximate quantile ``q`` of the nonzero |Δ| counted in ``histogram`` (within ±12%)."""
    total = int(histogram.sum())
    if total == 0:
        return 0.0
    index = int(np.searchsorted(np.cumsum(histogram), q * total, side="left"))
    low = np.array([index << HIST_SHIFT], dtype=np.uint32).view(np.float32)[0]
    high = np.array([(index + 1) << HIST_SHIFT], dtype=np.uint32).view(np.float32)[0]
    return float(np.sqrt(float(low) * float(high)))
