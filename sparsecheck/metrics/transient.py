"""``transient_updates`` and ``update_categories``: what a run changed along the way (METRICS.md).

A run is θ_0 = ``base``, then θ_1 … θ_T = ``run`` in training order (θ_T final).  Per tensor,
under the equality policy, M = changed(θ_0, θ_T) and C_t = changed(θ_0, θ_t).

Memory: for one tensor name the changed-masks C_1 … C_T are made one at a time and reduced to
counts (|C_t|, |C_t ∧ ¬M|) at once; only M and the running union of the C_t (one bool per entry
each) live while that name is processed, and only the counts are kept across names, so memory
does not grow with T.  Both metrics of one pass share the counts (``TensorGroup.memo``), and M
is the same memoized comparison an ``update_sparsity`` check of (θ_0, θ_T) uses.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, ClassVar

import numpy as np

from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._runs import STEP_FOLDER
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
from sparsecheck.metrics._equality import POLICY_PARAMS, EqualityPolicy, compare, compare_arrays
from sparsecheck.metrics._grouping import GRANULARITIES, group_key, sort_keys


def run_steps(run: Sequence[str]) -> list[int]:
    """Each checkpoint's step: the ``<step>`` of a ``checkpoint-<step>`` name when every
    checkpoint has one, else its position t = 1 … T."""
    matches = [STEP_FOLDER.fullmatch(PurePath(source).name) for source in run]
    if all(matches):
        return [int(m.group(1)) for m in matches if m]
    return list(range(1, len(run) + 1))


@dataclass
class RunCounts:
    """One tensor's counts over a run."""

    numel: int
    #: |M|: entries changed at the end.
    consistent: int
    #: |union_t C_t|: entries changed at some checkpoint.
    ever: int
    #: |C_t| and |C_t ∧ ¬M| for t = 1 … T.
    changed: np.ndarray
    transient: np.ndarray


def run_counts(group: TensorGroup, base: str, run: Sequence[str], policy: EqualityPolicy) -> RunCounts:
    """The counts of ``group``'s tensor over ``run``, computed once per pass."""
    return group.memo(("run_counts", base, tuple(run), policy), lambda: _count(group, base, run, policy))


def _count(group: TensorGroup, base: str, run: Sequence[str], policy: EqualityPolicy) -> RunCounts:
    final = compare(group, base, run[-1], policy).mask
    ever = final.copy()
    changed, transient = [], []
    for key in run:
        if key == run[-1]:
            mask = final
        else:
            mask = compare_arrays(
                group.array(base), group.meta(base).dtype, group.array(key), group.meta(key).dtype, policy
            ).mask
        changed.append(int(np.count_nonzero(mask)))
        transient.append(changed[-1] - int(np.count_nonzero(mask & final)))
        ever |= mask
    return RunCounts(
        numel=int(final.size),
        consistent=int(np.count_nonzero(final)),
        ever=int(np.count_nonzero(ever)),
        changed=np.array(changed, dtype=np.int64),
        transient=np.array(transient, dtype=np.int64),
    )


def _total(counts: Sequence[RunCounts]) -> RunCounts:
    return RunCounts(
        numel=sum(c.numel for c in counts),
        consistent=sum(c.consistent for c in counts),
        ever=sum(c.ever for c in counts),
        changed=np.sum([c.changed for c in counts], axis=0),
        transient=np.sum([c.transient for c in counts], axis=0),
    )


def transient_curves(total: RunCounts) -> dict[str, np.ndarray]:
    """Per checkpoint: transient share |C_t ∧ ¬M| / |C_t| (0 where nothing changed), transient
    fraction |C_t ∧ ¬M| / n and changed fraction |C_t| / n."""
    share = np.divide(
        total.transient, total.changed, out=np.zeros(total.changed.shape), where=total.changed > 0
    )
    return {
        "transient_share": share,
        "transient_fraction": total.transient / total.numel,
        "changed_fraction": total.changed / total.numel,
    }


class _RunReducer(Reducer):
    """Collects :class:`RunCounts` per tensor; subclasses turn totals into fields."""

    value_field: ClassVar[str]
    definition: ClassVar[str]

    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        self.metric = metric
        self.base: str = args["base"]
        self.run: list[str] = list(args["run"])
        self.policy = EqualityPolicy.from_args(args)
        self.steps = run_steps(self.run)
        self.counts: dict[str, RunCounts] = {}

    def prepare(self, group: TensorGroup) -> None:
        run_counts(group, self.base, self.run, self.policy)

    def update(self, group: TensorGroup) -> None:
        self.counts[group.name] = run_counts(group, self.base, self.run, self.policy)

    def fields(self, total: RunCounts) -> Fields:
        """The metric's fields for a total over some tensors (the whole, or one group)."""
        return {**self.own_fields(total), "compared": total.numel}

    @abstractmethod
    def own_fields(self, total: RunCounts) -> Fields:
        """The fields that are the metric's own."""

    def series(self, total: RunCounts) -> dict[str, list[Scalar]]:
        return {}

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        if not self.counts:
            raise UsageError(f"{self.metric}: no tensor was compared (include/exclude select nothing)")
        total = _total(list(self.counts.values()))
        fields = self.fields(total)
        fields.update(
            checkpoints=len(self.run),
            observed_at="checkpoints",
            skipped=len(skipped),
            policy=self.policy.name,
            tol=self.policy.tol,
        )
        groups: dict[str, dict[str, Fields]] = {}
        for granularity in GRANULARITIES:
            members: dict[str, list[RunCounts]] = {}
            for name, counts in self.counts.items():
                members.setdefault(group_key(granularity, name), []).append(counts)
            groups[granularity] = {key: self.fields(_total(members[key])) for key in sort_keys(members)}
        return MetricResult(
            metric=self.metric,
            value_field=self.value_field,
            fields=fields,
            definition=(
                f"{self.metric}: {self.definition}; changed = {self.policy.describe()} against base, "
                f"observed at {len(self.run)} checkpoints; numel-weighted; METRICS.md"
            ),
            groups=groups,
            series=self.series(total),
            skipped=list(skipped),
        )


class TransientUpdatesReducer(_RunReducer):
    value_field = "transient_share_max"
    definition = (
        "transient share |C_t ∧ ¬M| / |C_t| (0 where nothing changed) and fraction |C_t ∧ ¬M| / n "
        "per checkpoint t = 1..T; max and mean over t"
    )

    def own_fields(self, total: RunCounts) -> Fields:
        curves = transient_curves(total)
        share, fraction = curves["transient_share"], curves["transient_fraction"]
        peak = int(np.argmax(share))
        return {
            "transient_share_max": float(share[peak]),
            "transient_share_mean": float(share.mean()),
            "transient_fraction_max": float(fraction.max()),
            "transient_fraction_mean": float(fraction.mean()),
            "peak_step": self.steps[peak],
        }

    def series(self, total: RunCounts) -> dict[str, list[Scalar]]:
        curves = transient_curves(total)
        return {
            "step": list(self.steps),
            **{name: [float(v) for v in curve] for name, curve in curves.items()},
        }


class UpdateCategoriesReducer(_RunReducer):
    value_field = "transient"
    definition = (
        "consistent = |M| / n, transient = |(union_t C_t) ∧ ¬M| / n, "
        "untouched = |¬ union_t C_t| / n (they sum to 1)"
    )

    def own_fields(self, total: RunCounts) -> Fields:
        n = total.numel
        transient, untouched = total.ever - total.consistent, n - total.ever
        assert transient >= 0 and untouched >= 0, "M lies inside the union of the C_t (C_T = M)"
        fractions = {
            "consistent": total.consistent / n,
            "transient": transient / n,
            "untouched": untouched / n,
        }
        assert abs(sum(fractions.values()) - 1.0) < 1e-9
        return dict(fractions)


_RUN_PARAMS = (
    Param("base", "checkpoint", "θ_0: the checkpoint the run started from"),
    Param("run", "checkpoints", "θ_1 … θ_T: the run's checkpoints in training order (the last is final)"),
    *POLICY_PARAMS,
)


class TransientUpdates(Metric):
    name = "transient_updates"
    summary = "share of entries changed at a checkpoint that are back at base by the end (curve over t)"
    params = _RUN_PARAMS
    value_field = TransientUpdatesReducer.value_field
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return TransientUpdatesReducer(self.name, args)


class UpdateCategories(Metric):
    name = "update_categories"
    summary = "consistent / transient / untouched fractions of entries over a run's checkpoints"
    params = _RUN_PARAMS
    value_field = UpdateCategoriesReducer.value_field
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return UpdateCategoriesReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [TransientUpdates(), UpdateCategories()]
