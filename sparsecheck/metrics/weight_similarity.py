"""The ``weight_similarity`` metric: how close a subnetwork-only run ends to the full run.

θ_sub vs θ_full (METRICS.md): equal fraction #(|θ_sub - θ_full| ≤ tol) / n (identical values
always count as equal, a NaN never does), relative L2 ‖θ_sub - θ_full‖₂ / ‖θ_full‖₂, and, with
θ_base, the cosine between the updates Δ_sub = θ_sub - θ_base and Δ_full = θ_full - θ_base.
Differences are taken in float32 (float64 when any side is stored in float64) from the stored
values, a chunk at a time; sums of squares and dot products accumulate in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from sparsecheck._dtypes import compute_dtype, widen
from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import (
    Fields,
    Metric,
    MetricResult,
    Param,
    Reducer,
    SkippedTensor,
    TensorGroup,
)
from sparsecheck.metrics._equality import CHUNK
from sparsecheck.metrics._grouping import GRANULARITIES, group_key, sort_keys

DEFAULT_TOLERANCE = 1e-4


@dataclass
class SimilaritySums:
    """Counts and float64 sums over some tensors; they add up across tensors."""

    numel: int = 0
    equal: int = 0
    #: ‖θ_sub - θ_full‖² and ‖θ_full‖².
    diff_sq: float = 0.0
    full_sq: float = 0.0
    #: ⟨Δ_sub, Δ_full⟩, ‖Δ_sub‖², ‖Δ_full‖² (zero without a base).
    dot: float = 0.0
    sub_update_sq: float = 0.0
    full_update_sq: float = 0.0

    @classmethod
    def total(cls, parts: Iterable[SimilaritySums]) -> SimilaritySums:
        result = cls()
        for part in parts:
            for f in fields(cls):
                setattr(result, f.name, getattr(result, f.name) + getattr(part, f.name))
        return result


@dataclass(frozen=True)
class Stored:
    """A tensor as stored in one checkpoint."""

    array: np.ndarray
    dtype: str

    @classmethod
    def of(cls, group: TensorGroup, checkpoint: str) -> Stored:
        return cls(group.array(checkpoint).reshape(-1), group.meta(checkpoint).dtype)


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """x · y of one chunk, by BLAS in the compute dtype (chunk sums are added in float64)."""
    return float(np.dot(x, y))


def similarity_sums(sub: Stored, full: Stored, tol: float, base: Stored | None = None) -> SimilaritySums:
    """The sums of one tensor (flat stored arrays), a chunk of entries at a time."""
    sides = [sub, full] if base is None else [sub, full, base]
    wide = np.result_type(*(compute_dtype(s.dtype, s.dtype) for s in sides))
    threshold = wide.type(tol)
    sums = SimilaritySums(numel=int(sub.array.size))
    size = min(CHUNK, sub.array.size)
    # Chunk buffers, reused (widened values, differences and flags; never the mapped arrays).
    values = [np.empty(size, dtype=wide) for _ in sides]
    diff, update_sub, update_full = (np.empty(size, dtype=wide) for _ in range(3))
    equal, close = np.empty(size, dtype=np.bool_), np.empty(size, dtype=np.bool_)
    for start in range(0, sub.array.size, CHUNK):
        span = slice(start, start + CHUNK)
        s, f, *b = (
            widen(side.array[span], side.dtype, wide, out) for side, out in zip(sides, values, strict=True)
        )
        n = s.size
        np.subtract(s, f, out=diff[:n])
        sums.diff_sq += _dot(diff[:n], diff[:n])
        sums.full_sq += _dot(f, f)
        np.abs(diff[:n], out=diff[:n])
        np.less_equal(diff[:n], threshold, out=close[:n])
        np.equal(s, f, out=equal[:n])  # inf == inf, whose difference is NaN
        sums.equal += int(np.count_nonzero(np.logical_or(close[:n], equal[:n], out=close[:n])))
        if b:
            np.subtract(s, b[0], out=update_sub[:n])
            np.subtract(f, b[0], out=update_full[:n])
            sums.dot += _dot(update_sub[:n], update_full[:n])
            sums.sub_update_sq += _dot(update_sub[:n], update_sub[:n])
            sums.full_update_sq += _dot(update_full[:n], update_full[:n])
    return sums


def similarity_fields(sums: SimilaritySums, with_base: bool) -> Fields:
    """Equal fraction, relative L2 (0 when equal, inf when θ_full is all zeros) and, with a
    base, the update cosine (NaN when either update is zero)."""
    if sums.diff_sq == 0:
        relative = 0.0
    else:
        relative = math.sqrt(sums.diff_sq / sums.full_sq) if sums.full_sq else math.inf
    result: Fields = {
        "equal_fraction": sums.equal / sums.numel if sums.numel else float("nan"),
        "relative_l2": relative,
        "equal": sums.equal,
        "compared": sums.numel,
    }
    if with_base:
        norms = math.sqrt(sums.sub_update_sq) * math.sqrt(sums.full_update_sq)
        result["update_cosine"] = sums.dot / norms if norms else float("nan")
    return result


class WeightSimilarityReducer(Reducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        self.metric = metric
        self.sub: str = args["sub"]
        self.full: str = args["full"]
        self.base: str | None = args.get("base")
        self.tol = float(args.get("tol", DEFAULT_TOLERANCE))
        if self.tol < 0:
            raise UsageError(f"{metric}: tol must be >= 0, got {self.tol}")
        self.sums: dict[str, SimilaritySums] = {}
        self.dtypes: dict[str, tuple[str, ...]] = {}

    def prepare(self, group: TensorGroup) -> None:
        self._sums(group)

    def update(self, group: TensorGroup) -> None:
        self.sums[group.name] = self._sums(group)
        sides = (self.sub, self.full) if self.base is None else (self.sub, self.full, self.base)
        self.dtypes[group.name] = tuple(group.meta(side).dtype for side in sides)

    def _sums(self, group: TensorGroup) -> SimilaritySums:
        def compute() -> SimilaritySums:
            base = None if self.base is None else Stored.of(group, self.base)
            return similarity_sums(Stored.of(group, self.sub), Stored.of(group, self.full), self.tol, base)

        return group.memo(("similarity_sums", self.sub, self.full, self.base, self.tol), compute)

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        if not self.sums:
            raise UsageError(f"{self.metric}: no tensor was compared (include/exclude select nothing)")
        with_base = self.base is not None
        groups: dict[str, dict[str, Fields]] = {}
        for granularity in GRANULARITIES:
            members: dict[str, list[SimilaritySums]] = {}
            for name, sums in self.sums.items():
                members.setdefault(group_key(granularity, name), []).append(sums)
            groups[granularity] = {
                key: similarity_fields(SimilaritySums.total(members[key]), with_base)
                for key in sort_keys(members)
            }
        result_fields = similarity_fields(SimilaritySums.total(self.sums.values()), with_base)
        result_fields.update(tensors=len(self.sums), skipped=len(skipped), tol=self.tol)
        cosine = "; update_cosine = cos(θ_sub - θ_base, θ_full - θ_base)" if with_base else ""
        return MetricResult(
            metric=self.metric,
            value_field="equal_fraction",
            fields=result_fields,
            definition=(
                f"{self.metric}: equal_fraction = #(|θ_sub - θ_full| <= {self.tol:g}) / n; "
                f"relative_l2 = ‖θ_sub - θ_full‖₂ / ‖θ_full‖₂{cosine}; METRICS.md"
            ),
            groups=groups,
            skipped=list(skipped),
            notes=self._mixed_dtype_notes(),
        )

    def _mixed_dtype_notes(self) -> list[str]:
        mixed = sorted({dtypes for dtypes in self.dtypes.values() if len(set(dtypes)) > 1})
        if not mixed:
            return []
        count = sum(1 for dtypes in self.dtypes.values() if len(set(dtypes)) > 1)
        shown = "; ".join(" vs ".join(dtypes) for dtypes in mixed)
        return [
            f"{count} tensor(s) stored in different dtypes ({shown}): "
            "compared in float32 (float64 when a side is float64)"
        ]


class WeightSimilarity(Metric):
    name = "weight_similarity"
    summary = "θ_sub vs θ_full: equal fraction within tol, relative L2, update cosine with a base"
    params = (
        Param("sub", "checkpoint", "θ_sub: the subnetwork-only run's final checkpoint"),
        Param("full", "checkpoint", "θ_full: the full run's final checkpoint"),
        Param("base", "checkpoint", "θ_base, both runs' start: adds the update cosine (optional)", None),
        Param("tol", "float", "entries within tol of each other count as equal", DEFAULT_TOLERANCE),
    )
    value_field = "equal_fraction"
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return WeightSimilarityReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [WeightSimilarity()]
