"""The ``update_sparsity`` metric: the fraction of entries a fine-tuning run left unchanged.

A built-in plugin, written exactly as a third-party metric plugin would be.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparsecheck._dtypes import compute_dtype
from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Fields, Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup
from sparsecheck.metrics._equality import (
    HIST_BINS,
    POLICY_PARAMS,
    EqualityPolicy,
    PairComparison,
    compare,
    delta_quantile,
)
from sparsecheck.metrics._grouping import GRANULARITIES, group_key, sort_keys

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class _TensorCount:
    numel: int
    changed: int
    moved: int
    changed_if_bf16: int | None
    dtypes: tuple[str, str]


@dataclass
class SparsityTally:
    """Per-tensor counts of one pass, summarised globally and per group."""

    counts: dict[str, _TensorCount] = field(default_factory=dict)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, dtype=np.int64))
    max_abs_delta: float = 0.0

    def add(self, name: str, comparison: PairComparison) -> None:
        self.counts[name] = _TensorCount(
            comparison.numel,
            comparison.changed,
            comparison.moved,
            comparison.changed_if_bf16,
            comparison.dtypes,
        )
        self.histogram += comparison.delta_histogram
        self.max_abs_delta = max(self.max_abs_delta, comparison.max_abs_delta)

    def global_fields(self) -> Fields:
        counts = list(self.counts.values())
        fields = _sparsity_fields(counts)
        fields["moved"] = sum(c.moved for c in counts)
        fields["sparsity_exact"] = 1.0 - fields["moved"] / fields["compared"]  # type: ignore[operator]
        if any(c.changed_if_bf16 is not None for c in counts):
            changed_bf16 = sum(c.moved if c.changed_if_bf16 is None else c.changed_if_bf16 for c in counts)
            fields["sparsity_if_bf16"] = 1.0 - changed_bf16 / fields["compared"]  # type: ignore[operator]
        fields["abs_delta_max"] = self.max_abs_delta
        for q in QUANTILES:
            fields[f"abs_delta_p{round(q * 100)}"] = min(
                delta_quantile(self.histogram, q), self.max_abs_delta
            )
        fields["dtypes"] = ", ".join(sorted({_dtype_text(c.dtypes) for c in counts}))
        return fields

    def groups(self, skipped: Sequence[SkippedTensor]) -> dict[str, dict[str, Fields]]:
        """Fields per group of each granularity; ``skipped`` counts the group's skipped names."""
        groups: dict[str, dict[str, Fields]] = {}
        for granularity in GRANULARITIES:
            members: dict[str, list[_TensorCount]] = {}
            for name, count in self.counts.items():
                members.setdefault(group_key(granularity, name), []).append(count)
            left_out = Counter(group_key(granularity, s.name) for s in skipped)
            groups[granularity] = {
                key: {**_sparsity_fields(members[key]), "skipped": left_out[key]}
                for key in sort_keys(members)
            }
        for name, fields in groups["tensor"].items():
            del fields["sparsity_mean"], fields["tensors"]
            fields["dtypes"] = _dtype_text(self.counts[name].dtypes)
        return groups

    def mixed_dtype_notes(self) -> list[str]:
        """One note per compute dtype used for pairs stored in different dtypes."""
        by_wide: dict[str, list[tuple[str, str]]] = {}
        for count in self.counts.values():
            if count.dtypes[0] != count.dtypes[1]:
                by_wide.setdefault(compute_dtype(*count.dtypes).name, []).append(count.dtypes)
        return [
            f"{len(pairs)} tensor(s) stored in different dtypes "
            f"({'; '.join(sorted({_dtype_text(p) for p in pairs}))}): compared in {wide}"
            for wide, pairs in sorted(by_wide.items())
        ]


def _dtype_text(dtypes: tuple[str, str]) -> str:
    return dtypes[0] if dtypes[0] == dtypes[1] else f"{dtypes[0]} vs {dtypes[1]}"


def _sparsity_fields(counts: Sequence[_TensorCount]) -> Fields:
    compared = sum(c.numel for c in counts)
    changed = sum(c.changed for c in counts)
    per_tensor = [1.0 - c.changed / c.numel for c in counts if c.numel]
    return {
        "sparsity": 1.0 - changed / compared if compared else float("nan"),
        "density": changed / compared if compared else float("nan"),
        "sparsity_mean": float(np.mean(per_tensor)) if per_tensor else float("nan"),
        "changed": changed,
        "compared": compared,
        "tensors": len(counts),
    }


class UpdateSparsityReducer(Reducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        self.metric = metric
        self.base = args["base"]
        self.tuned = args["tuned"]
        self.policy = EqualityPolicy.from_args(args)
        self.tally = SparsityTally()

    def prepare(self, group: TensorGroup) -> None:
        compare(group, self.base, self.tuned, self.policy)

    def update(self, group: TensorGroup) -> None:
        self.tally.add(group.name, compare(group, self.base, self.tuned, self.policy))

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        if not self.tally.counts:
            raise UsageError(f"{self.metric}: no tensor was compared (include/exclude select nothing)")
        fields = self.tally.global_fields()
        fields.update(skipped=len(skipped), policy=self.policy.name, tol=self.policy.tol)
        return MetricResult(
            metric=self.metric,
            value_field="sparsity",
            fields=fields,
            definition=(
                f"{self.metric}: fraction of entries unchanged, {self.policy.describe()}, "
                "numel-weighted (sparsity_mean: unweighted over tensors); METRICS.md"
            ),
            groups=self.tally.groups(skipped),
            skipped=list(skipped),
            notes=self.tally.mixed_dtype_notes(),
        )


class UpdateSparsity(Metric):
    name = "update_sparsity"
    summary = "fraction of entries unchanged between base and tuned (the seed's Table 1 sense)"
    params = (
        Param("base", "checkpoint", "the checkpoint before the training stage"),
        Param("tuned", "checkpoint", "the checkpoint after it"),
        *POLICY_PARAMS,
    )
    value_field = "sparsity"
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return UpdateSparsityReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [UpdateSparsity()]
