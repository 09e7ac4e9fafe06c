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


def candidate_chunks(a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str) -> Iterator[CandidateChunk]:
    """Walk flat stored arrays ``a`` (base) and ``b`` (tuned) in chunks of :data:`CHUNK` entries.

    Bits are compared first; only the entries whose bits differ are widened, so no full-size
    float temporaries are made.
    """
    same_dtype = a_dtype == b_dtype
    is_float = a_dtype in FLOATS or b_dtype in FLOATS
    wide = compute_dtype(a_dtype, b_dtype) if is_float else np.dtype(np.float64)
    for start in range(0, a.size, CHUNK):
        span = slice(start, start + CHUNK)
        ca, cb = a[span], b[span]
        where: np.ndarray | slice = slice(None)
        if same_dtype:
            where = np.flatnonzero(bits(ca) != bits(cb))
            ca, cb = ca[where], cb[where]
        values_a, values_b = widen(ca, a_dtype, wide), widen(cb, b_dtype, wide)
        delta = np.abs(values_a - values_b)
        # Integer bits that differ are values that differ; NaN != NaN, and two NaNs reach here
        # only with different bits (or different dtypes).
        differ = np.ones(delta.shape, dtype=np.bool_) if same_dtype and not is_float else values_a != values_b
        yield CandidateChunk(span, where, values_a, values_b, delta, differ)


def compare_arrays(
    a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str, policy: EqualityPolicy
) -> PairComparison:
    """Compare stored arrays ``a`` (base) and ``b`` (tuned) entry by entry."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    mask = np.zeros(flat_a.shape, dtype=np.bool_)
    histogram = np.zeros(HIST_BINS, dtype=np.int64)
    bf16_check = (a_dtype in FLOATS or b_dtype in FLOATS) and max(
        PRECISION.get(a_dtype, 64), PRECISION.get(b_dtype, 64)
    ) > PRECISION["bfloat16"]
    changed = moved = changed_bf16 = 0
    max_delta = 0.0
    for chunk in candidate_chunks(flat_a, a_dtype, flat_b, b_dtype):
        hit = _changed(policy, chunk.a, chunk.b, chunk.delta, chunk.differ)
        mask[chunk.span][chunk.where] = hit
        changed += int(np.count_nonzero(hit))
        moved += int(np.count_nonzero(chunk.differ))
        finite = chunk.delta[np.isfinite(chunk.delta) & (chunk.delta > 0)]
        if finite.size:
            max_delta = max(max_delta, float(finite.max()))
            top = finite.astype(np.float32).view(np.uint32) >> HIST_SHIFT
            histogram += np.bincount(top, minlength=HIST_BINS)
        if bf16_check:
            bf16_a, bf16_b = round_to_bfloat16_bits(chunk.a), round_to_bfloat16_bits(chunk.b)
            # Compared as numbers: +0 and -0 (also tiny values rounded to zero) are equal.
            both_zero = ((bf16_a | bf16_b) & 0x7FFF) == 0
            changed_bf16 += int(np.count_nonzero((bf16_a != bf16_b) & ~both_zero))
    return PairComparison(
        numel=int(flat_a.size),
        changed=changed,
        moved=moved,
        changed_if_bf16=changed_bf16 if bf16_check else None,
        max_abs_delta=max_delta,
        delta_histogram=histogram,
        mask=mask.reshape(a.shape),
        dtypes=(a_dtype, b_dtype),
    )


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
