"""The ``tolerance_sweep`` metric: update sparsity at several tolerances from one read.

For every tensor the exact number of entries with |Δ| > τ is counted for every τ at once: the
|Δ| of the entries whose stored bits differ (the same candidates and float32/float64 Δ as the
``atol`` policy, see ``_equality.moved_deltas``) are placed among the sorted tolerances
with ``np.searchsorted``.  τ = 0 is the ``exact`` policy; a NaN that differs is changed at
every τ.  So ``sparsity_at_<τ>`` equals ``update_sparsity`` with ``policy: atol, tol: τ``.

``spread`` (the primary value) is max - min sparsity over the tolerances in [1e-6, 1e-4], the
range in which the seed claims its results are robust.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import (
    Fields,
    Metric,
    MetricResult,
    Param,
    Reducer,
    Scalar,
    SkippedTensor,
    TensorGroup,
)
from sparsecheck.metrics._equality import moved_deltas
from sparsecheck.metrics._grouping import GRANULARITIES, group_key, sort_keys

DEFAULT_TOLERANCES = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
ROBUST_RANGE = (1e-6, 1e-4)


def tolerance_label(tol: float) -> str:
    """``1e-05`` for 1e-5, ``0`` for 0: the suffix of the ``sparsity_at_…`` fields."""
    return "0" if tol == 0 else str(np.format_float_scientific(tol, trim="-", exp_digits=2))


def changed_counts(
    a: np.ndarray, a_dtype: str, b: np.ndarray, b_dtype: str, tolerances: np.ndarray
) -> np.ndarray:
    """#(|Δ| > τ) for each τ of ascending ``tolerances``, between stored arrays ``a`` and ``b``."""
    # by_rank[k]: entries with exactly k tolerances below their |Δ|; changed at τ_j iff k > j.
    by_rank = np.zeros(tolerances.size + 1, dtype=np.int64)
    for delta in moved_deltas(a, a_dtype, b, b_dtype):
        delta[np.isnan(delta)] = np.inf
        # Tolerances in Δ's dtype, as the atol policy's ``delta > tol`` compares them.
        rank = np.searchsorted(tolerances.astype(delta.dtype), delta, side="left")
        by_rank += np.bincount(rank, minlength=by_rank.size)
    counts: np.ndarray = np.cumsum(by_rank[::-1])[::-1][1:]
    return counts


class ToleranceSweepReducer(Reducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        self.metric = metric
        self.base: str = args["base"]
        self.tuned: str = args["tuned"]
        given = list(args.get("tolerances", DEFAULT_TOLERANCES))
        if not given or not all(isinstance(t, (int, float)) and math.isfinite(t) and t >= 0 for t in given):
            raise UsageError(
                f"{metric}: args.tolerances must be a non-empty list of finite numbers >= 0, got {given}"
            )
        self.tolerances = np.array(sorted(set(given)), dtype=np.float64)
        low, high = ROBUST_RANGE
        self.in_range = (self.tolerances >= low) & (self.tolerances <= high)
        #: Tensor name → (numel, changed count per tolerance).
        self.counts: dict[str, tuple[int, np.ndarray]] = {}

    def prepare(self, group: TensorGroup) -> None:
        self._counts(group)

    def update(self, group: TensorGroup) -> None:
        self.counts[group.name] = (group.meta(self.base).numel, self._counts(group))

    def _counts(self, group: TensorGroup) -> np.ndarray:
        return group.memo(
            ("tolerance_counts", self.base, self.tuned, tuple(self.tolerances)),
            lambda: changed_counts(
                group.array(self.base),
                group.meta(self.base).dtype,
                group.array(self.tuned),
                group.meta(self.tuned).dtype,
                self.tolerances,
            ),
        )

    def sparsities(self, members: Sequence[tuple[int, np.ndarray]]) -> np.ndarray:
        numel = sum(n for n, _ in members)
        changed = np.sum([c for _, c in members], axis=0)
        result: np.ndarray = 1.0 - changed / numel if numel else np.full(self.tolerances.size, np.nan)
        return result

    def fields(self, members: Sequence[tuple[int, np.ndarray]]) -> Fields:
        sparsity = self.sparsities(members)
        robust = sparsity[self.in_range]
        result: Fields = {
            f"sparsity_at_{tolerance_label(tol)}": float(s)
            for tol, s in zip(self.tolerances, sparsity, strict=True)
        }
        result["spread"] = float(robust.max() - robust.min()) if robust.size else float("nan")
        result["compared"] = sum(n for n, _ in members)
        return result

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        if not self.counts:
            raise UsageError(f"{self.metric}: no tensor was compared (include/exclude select nothing)")
        members = list(self.counts.values())
        fields = self.fields(members)
        fields.update(tensors=len(members), skipped=len(skipped))
        groups: dict[str, dict[str, Fields]] = {}
        for granularity in GRANULARITIES:
            grouped: dict[str, list[tuple[int, np.ndarray]]] = {}
            for name, counts in self.counts.items():
                grouped.setdefault(group_key(granularity, name), []).append(counts)
            groups[granularity] = {key: self.fields(grouped[key]) for key in sort_keys(grouped)}
        low, high = ROBUST_RANGE
        notes = [] if self.in_range.any() else [f"no tolerance in [{low:g}, {high:g}]: spread is NaN"]
        series: dict[str, list[Scalar]] = {
            "tolerance": [float(t) for t in self.tolerances],
            "sparsity": [float(s) for s in self.sparsities(members)],
        }
        return MetricResult(
            metric=self.metric,
            value_field="spread",
            fields=fields,
            definition=(
                f"{self.metric}: sparsity_at_<tol> = fraction of entries with |Δ| <= tol (Δ in float32, "
                "float64 when a side is; tol 0 = exact), numel-weighted; spread = max - min of it "
                f"over tol in [{low:g}, {high:g}]; METRICS.md"
            ),
            groups=groups,
            series=series,
            skipped=list(skipped),
            notes=notes,
        )


class ToleranceSweep(Metric):
    name = "tolerance_sweep"
    summary = "update sparsity at several tolerances from one read, and its spread over 1e-6..1e-4"
    params = (
        Param("base", "checkpoint", "the checkpoint before the training stage"),
        Param("tuned", "checkpoint", "the checkpoint after it"),
        Param("tolerances", "floats", "the tolerances (|Δ| > tol counts as changed)", DEFAULT_TOLERANCES),
    )
    value_field = "spread"
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return ToleranceSweepReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [ToleranceSweep()]
