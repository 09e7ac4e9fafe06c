"""The ``mask_agreement`` metric: is there a subnetwork that N runs from one base all update?

Masks m_1 … m_N (N ≥ 2) come from N runs (``runs``, each compared with ``base``) or from N mask
files (``masks``).  For every entry, c = the number of runs that changed it (0 … N).  Reported
globally, per tensor, per layer and per module type (METRICS.md, mask_agreement):

- ``share_k{k}``: the share of entries with c = k; ``expected_k{k}``: its expectation under the
  uniform null (N independent runs, each changing as many entries as it did, placed at random);
  ``tv_distance``: the total variation distance between the two distributions;
- ``all_fraction`` = |m_1 ∧ … ∧ m_N| / n, ``expected_all`` its null expectation, ``lift_all``
  (the value) their ratio, ``z_score`` (exact null variance) and ``log10_p`` (a Chernoff bound on
  the upper tail: a conservative p-value); ``core_share`` = |∧ m_j| / |∨ m_j|;
- with ``base``: the same null within magnitude strata (the binary exponent of the base value,
  as in ``mask_overlap``): ``expected_k{k}_matched``, ``expected_all_matched``,
  ``lift_all_matched``, ``z_score_matched``, ``log10_p_matched``, ``tv_distance_matched``.
  Without ``base`` (mask files alone) these are null.

Only per-stratum counts are kept per tensor, never a mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._agreement_null import (
    all_changed_moments,
    count_distribution,
    log10_all_changed_bound,
)
from sparsecheck.metrics._api import Fields, Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup
from sparsecheck.metrics._equality import POLICY_PARAMS, EqualityPolicy, chunk_spans, compare
from sparsecheck.metrics._grouping import GRANULARITIES, group_key, sort_keys
from sparsecheck.metrics._maskset import MaskSet
from sparsecheck.metrics._strata import STRATA, stratum_ids


@dataclass(frozen=True)
class TensorAgreement:
    """One tensor's counts per non-empty stratum (one stratum of all entries without a base)."""

    ids: np.ndarray
    #: Entries per stratum, shape (S,).
    total: np.ndarray
    #: Entries run j changed per stratum, shape (S, N).
    changed: np.ndarray
    #: Entries changed by exactly k runs per stratum, shape (S, N + 1).
    counts: np.ndarray


def agreement_counts(masks: Sequence[np.ndarray], base: np.ndarray | None, dtype: str) -> TensorAgreement:
    """Count the runs that changed each entry of ``masks`` (bool, one per run), by stratum of the
    ``base`` values (``dtype`` their stored dtype), a chunk at a time."""
    runs, width = len(masks), len(masks) + 1
    flat = [mask.reshape(-1) for mask in masks]
    by_count = np.zeros(STRATA * width, dtype=np.int64)
    changed = np.zeros((STRATA, runs), dtype=np.int64)
    for span in chunk_spans(flat[0].size):
        size = flat[0][span].size
        ids = np.zeros(size, dtype=np.intp) if base is None else stratum_ids(base.reshape(-1)[span], dtype)
        count = np.zeros(size, dtype=np.intp)
        for j, mask in enumerate(flat):
            part = mask[span]
            count += part
            changed[:, j] += np.bincount(ids[part], minlength=STRATA)
        by_count += np.bincount(ids * width + count, minlength=STRATA * width)
    counts = by_count.reshape(STRATA, width)
    total = counts.sum(axis=1)
    kept = np.flatnonzero(total)
    return TensorAgreement(kept, total[kept], changed[kept], counts[kept])


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom else float("nan")


def _null_fields(observed: np.ndarray, total: np.ndarray, changed: np.ndarray, suffix: str) -> Fields:
    """The fields of one null (uniform: one stratum; matched: the magnitude strata)."""
    n, runs = int(observed.sum()), changed.shape[1]
    expected = count_distribution(total, changed)
    mean, variance = all_changed_moments(total, changed)
    all_changed = int(observed[runs])
    fields: Fields = {f"expected_k{k}{suffix}": expected[k] / n for k in range(runs + 1)}
    fields.update(
        {
            f"expected_all{suffix}": mean / n,
            f"lift_all{suffix}": _ratio(all_changed, mean),
            f"z_score{suffix}": (all_changed - mean) / math.sqrt(variance) if variance > 0 else math.nan,
            f"log10_p{suffix}": log10_all_changed_bound(all_changed, total, changed),
            f"tv_distance{suffix}": float(np.abs(observed - expected).sum()) / (2 * n),
        }
    )
    return fields


def _matched_names(runs: int) -> list[str]:
    names = [f"expected_k{k}_matched" for k in range(runs + 1)]
    return names + [
        f"{name}_matched" for name in ("expected_all", "lift_all", "z_score", "log10_p", "tv_distance")
    ]


def agreement_fields(items: Sequence[TensorAgreement], stratified: bool) -> Fields:
    """Every mask_agreement field of a group of tensors (see the module docstring)."""
    runs = items[0].changed.shape[1]
    total = np.zeros(STRATA, dtype=np.int64)
    changed = np.zeros((STRATA, runs), dtype=np.int64)
    counts = np.zeros((STRATA, runs + 1), dtype=np.int64)
    for item in items:
        total[item.ids] += item.total
        changed[item.ids] += item.changed
        counts[item.ids] += item.counts
    used = total > 0
    total, changed, counts = total[used], changed[used], counts[used]
    observed = counts.sum(axis=0)
    n = int(total.sum())
    all_changed, any_changed = int(observed[runs]), n - int(observed[0])
    fields: Fields = {
        "runs": runs,
        "compared": n,
        "changed_all": all_changed,
        "changed_any": any_changed,
        "all_fraction": all_changed / n,
        "any_fraction": any_changed / n,
        "core_share": _ratio(all_changed, any_changed),
        "mean_density": float(changed.sum()) / (runs * n),
    }
    fields.update({f"share_k{k}": int(observed[k]) / n for k in range(runs + 1)})
    fields.update(_null_fields(observed, np.array([n]), changed.sum(axis=0, keepdims=True), ""))
    if stratified:
        fields.update(_null_fields(observed, total, changed, "_matched"))
    else:
        fields.update(dict.fromkeys(_matched_names(runs)))
    return fields


class MaskAgreementReducer(Reducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        self.metric = metric
        self.base: str | None = args.get("base")
        self.runs: list[str] = list(args.get("runs") or [])
        mask_paths: list[str] = [str(path) for path in args.get("masks") or []]
        _check_sources(metric, self.base, self.runs, mask_paths)
        labels = [f"masks[{i}]" for i in range(len(mask_paths))]
        self.masks = MaskSet(metric, dict(zip(labels, mask_paths, strict=True)), args) if mask_paths else None
        self.policy = EqualityPolicy.from_args(args) if self.masks is None else self.masks.policy()
        self.counts: dict[str, TensorAgreement] = {}

    def prepare(self, group: TensorGroup) -> None:
        if self.masks is None:  # mask files are read in order, by update
            self._from_runs(group)

    def update(self, group: TensorGroup) -> None:
        if self.masks is None:
            self.counts[group.name] = self._from_runs(group)
            return
        assert self.base is not None  # the engine streams tensors only when there is a base
        masks = self.masks.read(group.name, group.meta(self.base).shape)
        if masks is not None:
            self.counts[group.name] = agreement_counts(
                masks, group.array(self.base), group.meta(self.base).dtype
            )

    def _from_runs(self, group: TensorGroup) -> TensorAgreement:
        base = self.base
        assert base is not None

        def compute() -> TensorAgreement:
            masks = [compare(group, base, run, self.policy).mask for run in self.runs]
            return agreement_counts(masks, group.array(base), group.meta(base).dtype)

        return group.memo(("agreement", base, tuple(self.runs), self.policy), compute)

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        notes: list[str] = []
        skipped = list(skipped)
        if self.masks is not None:
            try:
                if self.base is None:
                    for name in self.masks.pairing.names:
                        self.counts[name] = agreement_counts(
                            [file.read(name) for file in self.masks.files], None, "bool"
                        )
                notes, more = self.masks.finish(with_base=self.base is not None)
                skipped += more
            finally:
                self.masks.close()
        if not self.counts:
            raise UsageError(f"{self.metric}: no tensor was compared (include/exclude select nothing)")
        stratified = self.base is not None
        fields = agreement_fields(list(self.counts.values()), stratified)
        fields.update(
            tensors=len(self.counts),
            skipped=len(skipped),
            policy=self.policy.name,
            tol=self.policy.tol,
            masks="checkpoints" if self.masks is None else "mask files",
        )
        runs = int(fields["runs"] or 0)
        series: dict[str, list[Any]] = {
            "runs_changed": list(range(runs + 1)),
            "observed": [fields[f"share_k{k}"] for k in range(runs + 1)],
            "expected": [fields[f"expected_k{k}"] for k in range(runs + 1)],
        }
        if stratified:
            series["expected_matched"] = [fields[f"expected_k{k}_matched"] for k in range(runs + 1)]
        return MetricResult(
            metric=self.metric,
            value_field="lift_all",
            fields=fields,
            definition=self._definition(),
            groups=self._groups(stratified),
            series=series,
            skipped=sorted(skipped, key=lambda s: s.name),
            notes=notes + self._edge_notes(),
        )

    def _groups(self, stratified: bool) -> dict[str, dict[str, Fields]]:
        groups: dict[str, dict[str, Fields]] = {}
        for granularity in GRANULARITIES:
            members: dict[str, list[TensorAgreement]] = {}
            for name, count in self.counts.items():
                members.setdefault(group_key(granularity, name), []).append(count)
            groups[granularity] = {}
            for key in sort_keys(members):
                fields = agreement_fields(members[key], stratified)
                if granularity != "tensor":
                    fields["tensors"] = len(members[key])
                groups[granularity][key] = fields
        return groups

    def _definition(self) -> str:
        source = (
            f"masks of base→each of {len(self.runs)} runs, {self.policy.describe()}"
            if self.masks is None
            else f"masks from files {', '.join(self.masks.paths.values())}"
        )
        matched = "; matched null within strata of the base value's binary exponent" if self.base else ""
        return (
            f"{self.metric}: per entry the number of runs that changed it, against N independent runs "
            f"with the observed densities placed at random; changed in all N vs chance: lift, exact-variance "
            f"z, Chernoff-bound log10 p{matched}; {source}; METRICS.md"
        )

    def _edge_notes(self) -> list[str]:
        labels = self.runs if self.masks is None else list(self.masks.paths)
        totals = np.sum([item.changed.sum(axis=0) for item in self.counts.values()], axis=0)
        notes = [
            f"{label} changed no entry: nothing can be changed in all runs (lift_all is NaN)"
            for label, total in zip(labels, totals, strict=True)
            if total == 0
        ]
        if self.base is None:
            notes.append("no base given: the magnitude-matched null needs its values (fields null)")
        return notes


def _check_sources(metric: str, base: str | None, runs: list[str], masks: list[str]) -> None:
    problem = ""
    if runs and masks:
        problem = "give runs or masks, not both"
    elif runs and base is None:
        problem = "runs need base (their masks are their changes from it)"
    elif len(runs) + len(masks) < 2:
        given = len(runs) + len(masks)
        problem = (
            f"{given} {'run' if runs else 'mask'} given, need at least 2"
            if given
            else "no runs and no masks given"
        )
    if problem:
        raise UsageError(
            f"{metric}: {problem}; give base and runs: [...] (N ≥ 2 checkpoints), or masks: [...] "
            "(N ≥ 2 mask files; base optional, for the magnitude-matched null)"
        )


class MaskAgreement(Metric):
    name = "mask_agreement"
    summary = "how many of N runs changed each entry, against independent runs of the same densities"
    params = (
        Param(
            "base",
            "checkpoint",
            "the common base (required with runs; with mask files, gives the magnitude-matched null)",
            None,
        ),
        Param("runs", "checkpoints", "N ≥ 2 tuned checkpoints from base (m_j = run j's changes)", None),
        Param("masks", "masks", "N ≥ 2 mask files (sparsecheck mask) instead of runs", None),
        *POLICY_PARAMS,
    )
    value_field = "lift_all"
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return MaskAgreementReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [MaskAgreement()]
